"""Prepare a machine for the course: ``make prepare``, or ``python -m effcourse.prepare`` without make.

Downloads and verifies MNIST, trains and caches the three baselines through ``models.pretrained``
(the cache notebook 01 reads), then runs the doctor and returns its exit status.
Options: ``--profile quick|full``, ``--no-baselines``, ``--no-doctor``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def _step(title: str) -> float:
    print(f"\n== {title}", flush=True)
    return time.perf_counter()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m effcourse.prepare",
        description="Download and verify MNIST, train and cache the three baselines, run the doctor.",
    )
    parser.add_argument("--profile", choices=("quick", "full"), help="default: $EFFCOURSE_PROFILE or full")
    parser.add_argument("--no-baselines", action="store_true", help="only the data and the doctor")
    parser.add_argument("--no-doctor", action="store_true", help="skip the doctor at the end")
    args = parser.parse_args(argv)
    if args.profile:
        os.environ["EFFCOURSE_PROFILE"] = args.profile

    import effcourse
    from effcourse import data, doctor, models, profile

    prof = profile.active()
    total = time.perf_counter()
    start = _step("MNIST: find or download, then verify")
    try:
        path = data.locate(download=True)
        data.load_raw(path, verify=True)
    except data.DataError as err:
        print(err, file=sys.stderr)
        return 1
    print(f"{path}: the four arrays match their sha256 ({time.perf_counter() - start:.0f} s)")

    if not args.no_baselines:
        start = _step(
            f"Baselines for the {prof.name} profile (notebook 01's, cached in {models.cache_dir(prof)})"
        )
        effcourse.setup(quiet=True)
        for name in models.BUILDERS:
            t0 = time.perf_counter()
            models.pretrained(name, prof)
            rec = models.training_record(name, prof)
            took = f"ready in {time.perf_counter() - t0:5.1f} s"
            print(
                f"{name:14s} {took} (test accuracy {rec.test_accuracy:.2%}, {rec.epochs} epochs)", flush=True
            )
        print(f"baselines: {time.perf_counter() - start:.0f} s")

    status = 0
    if not args.no_doctor:
        _step("The setup doctor")
        status = doctor.main(["--no-download"])
    print(f"\nprepare: {time.perf_counter() - total:.0f} s in all ({prof.name} profile)")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
