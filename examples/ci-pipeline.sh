#!/usr/bin/env bash
# A CI job for the one-layer CIFAR-10 study, usable as is.
#
#   CIFAR_SOURCE=path/or/url/to/cifar-10-binary.tar.gz  examples/ci-pipeline.sh
#
# Settings (environment variables, all optional):
#   CIFAR_SOURCE        archive, extracted folder or URL (default: a local copy, else the official download)
#   CIFARCLI_CACHE_DIR  the cache folder; keep it between CI runs (e.g. actions/cache) so
#                       unchanged stages are not recomputed (default: ./cache)
#   REPORTS_DIR         where the report goes (default: ./reports)
#   LAM, ETA, N_EPOCHS  the setting to train and gate on (default: 0.1, 0.001, 40)
#   MIN_ACCURACY        the test-accuracy gate (default: 0.36)
#   GRAD_TOL            the gradient-check gate (default: 1e-6)
# Exits non-zero at the first failed step; the failing gate names itself on stderr.
set -euo pipefail

export CIFARCLI_CACHE_DIR="${CIFARCLI_CACHE_DIR:-./cache}"
reports="${REPORTS_DIR:-./reports}"
lam="${LAM:-0.1}"
eta="${ETA:-0.001}"
epochs="${N_EPOCHS:-40}"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

json_field() {  # json_field FILE key/key/...   (no jq needed)
    python -c 'import functools, json, sys
print(functools.reduce(lambda doc, key: doc[key], sys.argv[2].split("/"), json.load(open(sys.argv[1]))))' "$1" "$2"
}

echo "::group::fetch"
cifarcli fetch ${CIFAR_SOURCE:+--source "$CIFAR_SOURCE"} --json --quiet > "$out/fetch.json"
echo "dataset $(json_field "$out/fetch.json" dataset) ($(json_field "$out/fetch.json" n_train) train images)"
echo "::endgroup::"

echo "::group::gradcheck"
cifarcli gradcheck --tol "${GRAD_TOL:-1e-6}" --json --quiet > "$out/gradcheck.json"
echo "max relative gradient error $(json_field "$out/gradcheck.json" max_error)"
echo "::endgroup::"

echo "::group::train"
cifarcli train --lam "$lam" --eta "$eta" --n-epochs "$epochs" --json --quiet > "$out/train.json"
run_id="$(json_field "$out/train.json" run_id)"
echo "run $run_id: validation accuracy $(json_field "$out/train.json" final/val_acc)"
echo "::endgroup::"

echo "::group::evaluate"
cifarcli evaluate --run "$run_id" --min-accuracy "${MIN_ACCURACY:-0.36}" --json --quiet > "$out/evaluate.json"
echo "test accuracy $(json_field "$out/evaluate.json" test/accuracy)"
echo "::endgroup::"

echo "::group::report"
cifarcli report --reports-dir "$reports" --json --quiet > "$out/report.json"
echo "report: $(json_field "$out/report.json" paths/report.html)"
echo "::endgroup::"
