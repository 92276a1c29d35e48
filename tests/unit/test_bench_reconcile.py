"""The reconcile benchmark's pure parts: requests per Function by kind, and the profile
summary (py-spy's collapsed stacks to shares per function)."""

from __future__ import annotations

from pathlib import Path

from benchmarks.reconcile import frame_name, per_function, summarize_profile

SITE = "/w/.venv/lib/python3.11/site-packages"


def test_frame_names_keep_the_function_and_a_short_file() -> None:
    assert frame_name("reconcile (/w/fmesh_events/reconcile/engine.py:130)") == \
        "reconcile (reconcile/engine.py)"
    assert frame_name(f"request ({SITE}/urllib3/connectionpool.py:700)") == \
        "request (urllib3/connectionpool.py)"


def test_shares_count_own_samples_at_the_leaf_and_each_caller_once(tmp_path: Path) -> None:
    engine = "reconcile (/w/fmesh_events/reconcile/engine.py:130)"
    loads = f"loads ({SITE}/json/__init__.py:346)"
    recurse = "walk (/w/fmesh_events/x.py:1)"
    (tmp_path / "a.txt").write_text(
        f"{engine};{loads} 30\n"
        f"{engine} 10\n"
        f"{recurse};{recurse};{loads} 60\n"
        "not a stack line\n")
    summary = summarize_profile([tmp_path / "a.txt", tmp_path / "missing.txt"])
    assert summary["samples"] == 100
    own = dict(summary["own_percent"])
    assert own == {"loads (json/__init__.py)": 90.0, "reconcile (reconcile/engine.py)": 10.0}
    under = dict(summary["under_percent"])
    # A recursive function counts once per stack, so no share exceeds 100%.
    assert under["walk (fmesh_events/x.py)"] == 60.0
    assert under["reconcile (reconcile/engine.py)"] == 40.0
    assert under["loads (json/__init__.py)"] == 90.0


def test_no_samples_give_empty_tables(tmp_path: Path) -> None:
    assert summarize_profile([tmp_path / "none.txt"]) == \
        {"samples": 0, "own_percent": [], "under_percent": []}


def test_requests_per_function_count_only_what_moved_largest_first() -> None:
    before = {"functions GET": 100, "statefulsets PATCH": 7}
    after = {"functions GET": 400, "statefulsets PATCH": 307, "functions/status PATCH": 900,
             "services DELETE": 0}
    assert per_function(before, after, 300) == {"functions/status PATCH": 3.0,
                                                "functions GET": 1.0, "statefulsets PATCH": 1.0}
