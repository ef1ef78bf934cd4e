from cifarcli.cli import main

main()
