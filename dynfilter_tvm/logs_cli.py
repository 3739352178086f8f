"""``dynfilter-tvm logs {show,recheck,merge,export,import}``: inspect and move tuning logs."""
from __future__ import annotations

import sys
from pathlib import Path

from . import tuning_log
from .tuning_log import TuningLog, TuningLogError, format_us


def _logs(paths):
    if paths:
        return [TuningLog.load(p) for p in paths]
    roots = tuning_log.search_roots() or [tuning_log.user_root(), tuning_log.default_root()]
    found = [p.parent for root in roots for p in sorted(root.glob(f"*/{tuning_log.MANIFEST}"))]
    if not found:
        raise TuningLogError(f"no tuning logs under {', '.join(map(str, roots))}")
    return [TuningLog.load(p) for p in found]


def show(args) -> int:
    for tl in _logs(args.logs):
        print(f"{tl.path}: {tl.target_name}, TVM {tl.tvm_version}, {len(tl.entries)} kernels")
        rows = []
        for e in sorted(tl.entries.values(), key=lambda e: e.workload.key()):
            best = tl.best(e)
            speedup = e.default_us / e.tuned_us if e.default_us and e.tuned_us else None
            params = " ".join(f"{k}={v}" for k, v in e.workload.params)
            rows.append((f"{e.workload.op}.{e.workload.kernel}", params, e.workload.dtype,
                         format_us(e.tuned_us), format_us(e.default_us), f"{speedup:.2f}x" if speedup else "-",
                         str(e.trials), f"{e.tuning_s:.0f}" if e.tuning_s else "-",
                         _uses(tl, e, best)))
        head = ("kernel", "shapes", "dtype", "tuned", "default", "speed-up", "trials", "tuning s", "builds use")
        widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
        for r in [head, *rows]:
            print("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return 0


def _uses(tl, e, best) -> str:
    if not (e.use and best is not None):
        return "default"
    try:
        changed = tl.default_changed(e)
    except (KeyError, ValueError):  # a kernel or target this build has no default schedule for
        changed = False
    return "default (recheck)" if changed else "tuned"


def recheck(args) -> int:
    from . import tune

    tune.recheck(args.log, everything=args.all)
    return 0


def merge(args) -> int:
    out = tuning_log.merge([TuningLog.load(p) for p in args.logs], args.output, progress=True)
    print(f"merged {len(args.logs)} logs into {out.path}: {len(out.entries)} kernels, best record each")
    return 0


def export(args) -> int:
    n = tuning_log.export(TuningLog.load(args.log), args.output)
    print(f"exported {n} records to {args.output}")
    return 0


def _import_target(args):
    """``--target`` and ``--threads``: the target the file must be for (None: any)."""
    from tvm.target import Target

    from .target import resolve, target_json

    try:
        target = resolve(args.target or "llvm") if args.target or args.threads else None
    except ValueError as err:
        raise TuningLogError(str(err)) from None
    if not args.threads:
        return target
    if args.threads < 1:
        raise TuningLogError("--threads must be at least 1")
    if target.kind.name != "llvm":
        raise TuningLogError("--threads is a CPU core count: it goes with an llvm target")
    return Target({**target_json(target), "num-cores": args.threads})


def import_(args) -> int:
    target = _import_target(args)
    if args.output:
        out = Path(args.output)
    else:  # <import root>/<target-name>, named by the file itself
        import json

        try:
            name = json.loads(Path(args.file).read_bytes())["manifest"]["target_name"]
        except Exception:
            raise TuningLogError(f"{args.file} is not a dynfilter-tvm tuning export") from None
        if not isinstance(name, str) or not name.replace("-", "").replace("_", "").isalnum():
            raise TuningLogError(f"{args.file}: bad target name {name!r}")
        out = tuning_log.import_root() / name
    before = set()
    if (out / tuning_log.MANIFEST).exists():
        before = {r.key for recs in TuningLog.load(out).records.values() for r in recs}
    tl = tuning_log.import_(args.file, out, target, progress=True)
    after = {r.key for recs in tl.records.values() for r in recs}
    print(f"imported into {tl.path}: {len(tl.entries)} kernels for {tl.target_name}, "
          f"{len(after - before)} new records ({len(after)} in all)")
    return 0


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="logs_command", required=True)
    p = sub.add_parser("show", help="list tuned kernels: shapes, dtype, tuned and default times, speed-up")
    p.add_argument("logs", nargs="*", help="log directories (default: every log the build searches)")
    p.set_defaults(logs_func=show)
    p = sub.add_parser("recheck", help="measure again today's default schedule against each kernel's best record "
                                       "where the default changed since the log's times (builds use a record "
                                       "only while it beats today's default)")
    p.add_argument("log", help="log directory")
    p.add_argument("--all", action="store_true", help="every kernel with a record, not only those whose default changed")
    p.set_defaults(logs_func=recheck)
    p = sub.add_parser("merge", help="merge logs of one target, keeping the best record per kernel")
    p.add_argument("logs", nargs="+", help="log directories")
    p.add_argument("-o", "--output", required=True, help="new log directory")
    p.set_defaults(logs_func=merge)
    p = sub.add_parser("export", help="write a log as one portable JSON file")
    p.add_argument("log", help="log directory")
    p.add_argument("-o", "--output", required=True, help="file to write")
    p.set_defaults(logs_func=export)
    p = sub.add_parser("import", help="validate an exported file and add its records to a log (a record "
                                      "already there is kept once: importing twice changes nothing)")
    p.add_argument("file", help="exported file")
    p.add_argument("-o", "--output", help="log directory (default: <root>/<its target-name>, <root> being the first "
                                          "of $DYNFILTER_TVM_TUNING_LOGS if set, else "
                                          "$XDG_DATA_HOME/dynfilter-tvm/tuning_logs, by default "
                                          "~/.local/share/dynfilter-tvm/tuning_logs; builds search both)")
    p.add_argument("--target", help="refuse the file unless it is for this target (e.g. llvm, llvm:znver4, sm_90); "
                                    "llvm targets mean this machine's core count unless --threads is given")
    p.add_argument("--threads", type=int, default=0,
                   help="with an llvm --target (default llvm): the core count the file must be tuned for, "
                        "e.g. --target llvm:znver4 --threads 1 for a llvm-znver4-1c log")
    p.set_defaults(logs_func=import_)


def run_cli(args) -> int:
    try:
        return args.logs_func(args)
    except TuningLogError as err:
        raise SystemExit(f"error: {err}")
    except KeyboardInterrupt:
        print("\ninterrupted: nothing was written", file=sys.stderr)
        raise SystemExit(130)
