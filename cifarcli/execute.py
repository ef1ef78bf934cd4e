"""Training the runs that are missing: on local worker processes or on a Dask cluster.

``report`` and ``sweep`` call ``train_missing`` before they ask for their runs:

- ``local``: up to ``ws.jobs`` joblib/loky processes, each training one setting
  and writing its run to the store exactly as a sequential ``train`` would.
- ``dask``: an existing ``dask.distributed`` cluster. The client prepares each
  needed split once and scatters its training part to every worker
  (``broadcast=True``); workers run ``train_keeping_last_good`` and return the
  result; the client alone writes the cache (``stages.store_trained``), so
  workers need no shared disk. dask is imported only on this path.

Training is deterministic by construction (see threads.py), so a run has the
same bits whichever way it was trained.
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import os
import signal
import threading
import time
import warnings
from pathlib import Path

import numpy as np

from cifarcli import stages
from cifarcli.config import ORPHAN_CHECK_SECONDS, TrainConfig
from cifarcli.errors import CifarError, OptionError, WorkFailed
from cifarcli.stages import Workspace
from cifarcli.train import train_keeping_last_good

BACKENDS = ("local", "dask")
DASK_HINT = "pip install 'cifarcli[dask]'"


def train_missing(
    ws: Workspace,
    configs: list[TrainConfig],
    backend: str = "local",
    scheduler: str | None = None,
    figures: tuple | list = (),
) -> None:
    """Train the settings of ``configs`` that are not cached yet, at once where the backend allows.

    ``local``: on up to ``ws.jobs`` worker processes (with one job, nothing
    here: each run is trained when it is asked for). ``dask``: on the cluster
    at ``scheduler``. Afterwards every setting is an ordinary cached run, the
    same bits whichever way it was trained (training is deterministic).
    For the settings in ``figures`` (the report's runs), a worker process also
    evaluates and draws each run it trained as soon as its training ends (``stages.plot_artifact``:
    the same artifacts and bytes the parent would make), so the parent only
    copies them out of the cache.
    """
    if backend not in BACKENDS:
        raise OptionError("backend", f"unknown backend {backend!r}", hint="use local or dask")
    if backend == "dask" and not scheduler:
        raise OptionError(
            "scheduler",
            "the Dask backend needs a scheduler address (tcp://HOST:PORT)",
            hint="the address printed by dask-scheduler",
        )
    data_artifact = stages.dataset(ws)
    missing = [c for c in configs if stages.TRAIN.state(ws, stages.train_key(c, data_artifact.key))[0] != "cached"]
    if backend == "dask" and missing:
        _train_on_dask(ws, data_artifact, missing, scheduler)
    elif ws.jobs > 1 and len(missing) > 1:
        _train_on_processes(ws, missing, data_artifact.key, figures)


def _train_on_processes(ws: Workspace, missing: list[TrainConfig], data_key: str, figures=()) -> None:
    """Train ``missing`` on up to ``ws.jobs`` processes, each writing its run to the store as ``train`` would.

    Interrupted (Ctrl-C, SIGTERM, SIGHUP: all a KeyboardInterrupt by then),
    the workers are killed before the interruption goes on: their finished
    epochs are in their checkpoints, and a rerun resumes from there.
    """
    from joblib import Parallel, delayed, parallel_config
    from joblib.externals.loky.process_executor import BrokenProcessPool

    ws.log(f"training {len(missing)} settings on {min(ws.jobs, len(missing))} processes")
    # An absolute path: joblib reuses its worker processes, whose working folder is the one they started in.
    cache_dir = ws.cache_dir.resolve()
    results = None
    watcher = _Watcher(ws, missing, data_key, f"{min(ws.jobs, len(missing))} processes", figures)
    watcher.show()  # before the workers start (they take a moment): the count is on screen meanwhile
    try:
        with parallel_config(backend="loky", initializer=_worker_started):
            parallel = Parallel(n_jobs=min(ws.jobs, len(missing)), return_as="generator")
        # The call starts the workers and hands them the first tasks; the results come as they finish.
        with _workers_starting():
            results = parallel(delayed(_train_in_worker)(cache_dir, c, c in figures) for c in missing)
        watcher.start()  # after the workers' start: its thread is made with this thread's usual signal mask
        done = list(results)
    except BrokenProcessPool as exc:  # a worker died: killed from outside, out of memory, ...
        _stop(watcher, results)
        raise WorkFailed(
            f"a training worker process died: {str(exc).splitlines()[0]}",
            hint="finished epochs are kept; rerun to resume (or train one setting at a time)",
        ) from None
    except BaseException:
        _stop(watcher, results)
        raise
    watcher.stop(finished=True)
    _release_workers()
    for stage, key, status in (event for events in done for event in events):
        ws.record(stage, key, status)


def _stop(watcher: _Watcher, results) -> None:
    """After an interruption or a failure: the display stops, and the workers are stopped whatever the display does."""
    try:
        watcher.stop(finished=False)
    finally:
        _stop_workers(results)


class _Watcher:
    """Worker progress, seen from the parent: polls each setting's checkpoint file a few times a second.

    A worker saves its checkpoint (epoch, W, b, history) after every epoch; its
    modification time says when to read it again, so a poll costs a ``stat``
    per setting and a 120 kB load per new epoch, in a thread of this process
    that never blocks the results. A setting whose run is in the store is
    trained: one notice (``ws.log``); one in ``figures`` keeps its bar, saying so,
    until the worker has stored its figures. Nothing here draws: it calls
    ``ws.progress``.
    """

    INTERVAL = 0.25

    def __init__(self, ws: Workspace, configs: list[TrainConfig], data_key: str, where: str, figures=()):
        self.ws, self.where = ws, where
        labels = stages.distinct_labels(configs)
        self.settings = [(stages.train_key(c, data_key), label, c.n_epochs) for c, label in zip(configs, labels)]
        self.drawn_here = {stages.train_key(c, data_key) for c in configs if c in figures}
        self.drawing: set[str] = set()
        self.seen = {key: self._mtime(key) for key, _, _ in self.settings}  # an old checkpoint waits to be resumed
        self.latest: dict[str, tuple[int, dict]] = {}
        self.finished: set[str] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _checkpoint(self, key: str) -> Path:
        return stages.checkpoint_file(self.ws, key)

    def _mtime(self, key: str) -> int | None:
        try:
            return self._checkpoint(key).stat().st_mtime_ns
        except OSError:
            return None

    def show(self) -> None:
        self.ws.progress.settings_started(len(self.settings), self.where)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="cifarcli-progress", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.INTERVAL):
            try:
                self.poll()
            except Exception:  # progress is never worth a failure
                pass

    def poll(self) -> None:
        from cifarcli.safe_pickle import safe_load

        for key, label, n_epochs in self.settings:
            if key in self.drawing and stages.plotted(self.ws, key):
                self.drawing.discard(key)
                self.ws.progress.setting_finished(key, label, n_epochs, self.latest.get(key, (0, {}))[1])
            if key in self.finished:
                continue
            meta = stages.trained_meta(self.ws, key)
            if meta is not None:
                self._finish(key, label, n_epochs, meta["info"])
                continue
            mtime = self._mtime(key)
            if mtime is None or mtime == self.seen[key]:
                continue
            self.seen[key] = mtime
            try:
                saved = safe_load(self._checkpoint(key))
                epoch, history = int(saved["epoch"]), saved["history"]
                latest = {name: values[-1] for name, values in history.items() if values}
            except Exception:  # replaced while read, or not one: the next poll reads the next one
                continue
            self.latest[key] = (epoch, latest)
            self.ws.progress.setting(key, label, epoch, n_epochs, latest)

    def _finish(self, key: str, label: str, n_epochs: int, info: dict) -> None:
        self.finished.add(key)
        final = dict(info.get("final") or {})
        self.latest[key] = (n_epochs, final)
        if key in self.drawn_here and info.get("diverged_at") is None:
            self.drawing.add(key)
            self.ws.progress.setting_busy(key, label, n_epochs, "evaluating, figures")
        else:
            self.ws.progress.setting_finished(key, label, n_epochs, final)
        self.ws.log(f"[{len(self.finished)}/{len(self.settings)}] " + stages.trained_line(label, n_epochs, info))

    def stop(self, finished: bool) -> None:
        """Stop polling; with ``finished``, a last poll first, so every setting has its notice."""
        self._stop.set()
        if self._thread is not None and self._thread.is_alive():  # a Ctrl-C may land inside start()
            self._thread.join(timeout=5)
        try:
            if finished:
                self.poll()
                self.poll()  # the figures of the runs the last poll found trained are in the store too
        finally:
            self.ws.progress.settings_finished()


@contextlib.contextmanager
def _workers_starting():
    """While the worker processes start: no stray signal reaches them, and none cuts a start in half.

    Ctrl-C in a terminal reaches the whole process group. A worker caught by it
    while its interpreter was still starting printed a KeyboardInterrupt
    traceback (dozens of lines); workers are stopped by this process instead
    (``_stop_workers``). A blocked signal mask is kept across fork and exec, so
    SIGINT blocked in this thread while the workers start stays blocked in
    them for good. SIGHUP is blocked too: loky's and the stdlib's resource
    trackers ignore SIGINT and SIGTERM but died of a SIGHUP to the group, and
    their successors printed a traceback per shared resource; the workers
    unblock it as they start (``_worker_started``).

    Meanwhile a stop signal (taken by another thread of this process) is only
    noted, and sent again at the end, once every started worker is registered
    where ``_stop_workers`` finds it.
    """
    from multiprocessing import resource_tracker as stdlib_tracker

    from joblib.externals.loky.backend import resource_tracker as loky_tracker

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    arrived: list[int] = []
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    for signum, handler in handlers.items():
        if callable(handler):  # a Python handler (Ctrl-C's, the CLI's); SIG_DFL and SIG_IGN stay as they are
            signal.signal(signum, lambda number, frame: arrived.append(number))
    blocked = {signal.SIGINT, signal.SIGHUP}
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
    try:
        loky_tracker.ensure_running()
        stdlib_tracker.ensure_running()
        # Python 3.11's tracker launch ends with SIG_UNBLOCK of SIGINT instead of restoring the mask.
        signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        for signum, handler in handlers.items():
            if callable(handler):
                signal.signal(signum, handler)
        if arrived:
            signal.raise_signal(arrived[0])  # now its own handler runs: KeyboardInterrupt or Terminated


def _worker_started() -> None:
    """Run first in every worker process: Ctrl-C is for the parent, which stops the workers itself."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # also for a worker started later, outside _workers_starting
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})  # a hang-up of the group ends it quietly
    threading.Thread(
        target=_exit_when_orphaned, args=(os.getppid(),), name="cifarcli-orphan-check", daemon=True
    ).start()


def _exit_when_orphaned(parent: int) -> None:
    """End this worker once its parent is gone (``kill -9``, the OOM killer): nobody will read its result.

    An orphan is handed to another parent, so ``getppid()`` changes. Polled rather than
    PR_SET_PDEATHSIG, which fires when the *thread* that started the worker ends, not the
    process. Checkpoints are written atomically, so ending at any moment loses nothing.
    """
    while os.getppid() == parent:
        time.sleep(ORPHAN_CHECK_SECONDS)
    os._exit(1)


def _quiet_loky_threads() -> None:
    """From now on, an exception in loky's executor manager thread is not printed.

    Shut down while it was still handing out the first tasks, that thread can
    die of a KeyError (a race inside loky): its traceback on stderr would be
    noise after an interruption that already says what happened. Exceptions in
    any other thread are shown as before.
    """
    previous = threading.excepthook
    if getattr(previous, "_quiets_loky", False):
        return

    def hook(args):
        if args.thread is None or args.thread.name != "ExecutorManagerThread":
            previous(args)

    hook._quiets_loky = True
    threading.excepthook = hook


def _release_workers() -> None:
    """Let the idle worker processes go now, without waiting: they exit while this process goes on (the
    comparison figures, the report), instead of holding up its exit for seconds on a busy machine."""
    from joblib.externals.loky import reusable_executor

    executor = reusable_executor._executor  # joblib's workers: loky's one reusable executor
    if executor is not None:
        executor.shutdown(wait=False)


def _stop_workers(results) -> None:
    """Kill this process's worker processes now, and wait (briefly) until they are gone.

    joblib kills its loky workers itself when the exception reaches it while it
    waits for ``results``; this covers the moments around that (while the tasks
    are handed out, or when a worker died and the pool broke).
    """
    from joblib.externals.loky import get_reusable_executor

    _quiet_loky_threads()
    if results is not None:
        with warnings.catch_warnings():  # joblib's "N tasks ... not used": abandoned on purpose
            warnings.simplefilter("ignore")
            results.close()  # joblib aborts the tasks and kills its workers
    children = multiprocessing.active_children()  # loky's workers are multiprocessing processes
    if not children:
        return
    get_reusable_executor(reuse=True).shutdown(wait=False, kill_workers=True)  # no new tasks, no respawn
    for child in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.pid, signal.SIGKILL)  # mid-training: its finished epochs are in its checkpoint
    for child in children:
        child.join(timeout=5)


def _train_in_worker(cache_dir: Path, config: TrainConfig, figures: bool) -> list[tuple[str, str, str]]:
    """Train ``config`` (and, with ``figures``, evaluate and draw it); the store's events, for the parent."""
    ws = stages.Workspace(cache_dir)
    run = stages.train(ws, config)
    if figures and run.payload["diverged_at"] is None:
        stages.plot_artifact(ws, run)
    return [("train", run.key, run.status), *(event for event in ws.events if event[0] != "train")]


# -- Dask ------------------------------------------------------------------------------


def _training_part(data):
    """The prepared split without its test matrices (workers never look at the test set)."""
    return dataclasses.replace(
        data,
        X_test=np.empty((data.X_test.shape[0], 0), data.X_test.dtype),
        Y_test=np.empty((data.Y_test.shape[0], 0), data.Y_test.dtype),
        y_test=np.empty(0, data.y_test.dtype),
    )


def _connect(scheduler: str):
    """A dask.distributed Client for ``scheduler``; exit 2 without dask, exit 1 when unreachable."""
    try:
        from dask.distributed import Client
    except ImportError:
        raise CifarError("the Dask backend needs dask.distributed, which is not installed", hint=DASK_HINT) from None
    timeout = float(os.environ.get("CIFARCLI_DASK_TIMEOUT", "10"))
    try:
        return Client(scheduler, timeout=timeout, set_as_default=False)
    except Exception as exc:  # OSError, TimeoutError, ValueError for a malformed address, ...
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise WorkFailed(
            f"cannot reach the Dask scheduler at {scheduler}: {reason}",
            hint="start one with dask-scheduler, or check the address",
        ) from None


def _train_on_dask(ws: Workspace, data_artifact, configs: list[TrainConfig], scheduler: str) -> None:
    """Train ``configs`` on the cluster at ``scheduler``; this process alone stores each result as it arrives."""
    client = _connect(scheduler)
    try:
        _train_with_client(ws, client, data_artifact, configs, scheduler)
    except (CifarError, KeyboardInterrupt):
        raise
    except Exception as exc:  # the scheduler went away, a worker died, ...
        raise WorkFailed(
            f"Dask training on {scheduler} failed: {type(exc).__name__}: {_first_line(exc)}",
            hint="finished points are kept; rerun to resume",
        ) from None
    finally:
        client.close()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


def _train_with_client(ws, client, data_artifact, configs: list, scheduler: str) -> None:
    try:
        client.wait_for_workers(1, timeout=float(os.environ.get("CIFARCLI_DASK_TIMEOUT", "10")))
    except Exception:
        raise WorkFailed(
            f"the Dask scheduler at {scheduler} has no workers", hint="start some with: dask-worker " + scheduler
        ) from None
    prepared, futures = {}, {}
    for config in configs:
        group = (config.split, config.val_size, config.dtype)
        if group not in prepared:  # each split prepared once here, sent once to every worker
            data = stages.prepared(data_artifact, *group)
            prepared[group] = (data, client.scatter(_training_part(data), broadcast=True))
        future = client.submit(train_keeping_last_good, config, prepared[group][1], pure=False)
        futures[future] = (config, prepared[group][0])
    ws.log(f"training {len(configs)} points on the Dask cluster at {scheduler} ({len(client.nthreads())} workers)")
    # One bar per point, full when its result arrives (epochs are not sent back from the cluster).
    ws.progress.settings_started(len(configs), f"the Dask cluster at {scheduler}")
    try:
        for config, _ in futures.values():
            ws.progress.setting(
                stages.train_key(config, data_artifact.key), stages.run_label(config), 0, config.n_epochs, {}
            )
        _collect_from_dask(ws, futures, client, data_artifact, configs, scheduler)
    finally:
        ws.progress.settings_finished()


def _collect_from_dask(ws, futures: dict, client, data_artifact, configs: list, scheduler: str) -> None:
    from dask.distributed import as_completed

    for done, future in enumerate(as_completed(list(futures), loop=client.loop), 1):
        config, data = futures[future]
        try:
            result = future.result()
        except CifarError:
            raise
        except Exception as exc:
            raise WorkFailed(
                f"Dask training of λ={config.lam:g}, η={config.eta:g} failed on {scheduler}: "
                f"{type(exc).__name__}: {_first_line(exc)}",
                hint="finished points are kept; rerun to resume",
            ) from None
        run = stages.store_trained(ws, config, data_artifact, data, result)
        ws.progress.setting_finished(run.key, stages.run_label(config), config.n_epochs, run.meta["info"]["final"])
        ws.log(
            f"[{done}/{len(configs)}] {run.key} λ={config.lam:g} η={config.eta:g}: "
            + ("diverged" if result["diverged_at"] is not None else f"val acc {result['history']['val_acc'][-1]:.4f}")
        )
