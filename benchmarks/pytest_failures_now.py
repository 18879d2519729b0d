"""pytest plugin of the GPU suite: print each failure's traceback the moment it happens.

The suite stops ``pytest -m gpu`` when its time share is spent, before pytest's own summary; with this
plugin the log still says why each failed test failed. Loaded with ``-p pytest_failures_now`` and this
folder on ``PYTHONPATH``.
"""


def pytest_runtest_logreport(report) -> None:
    if report.failed:
        print(f"\n--- {report.nodeid} failed ({report.when}) ---\n{report.longreprtext}\n", flush=True)
