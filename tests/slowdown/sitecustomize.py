"""Test helper, on PYTHONPATH only in tests: every atomic write of the pipeline takes half a second longer, so that a
test can SIGKILL a job while a stage is under way (its temporary file exists, or just after a checkpoint)."""

import importlib.abc
import importlib.util
import sys
import time

DELAY_SECONDS = 0.25


class _SlowCommits(importlib.abc.MetaPathFinder):
    """Wraps wsss.core.artifacts.commit once the module is loaded (before anything imports the name)."""

    def find_spec(self, fullname, path, target=None):
        if fullname != "wsss.core.artifacts":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        load = spec.loader.exec_module

        def exec_module(module):
            load(module)
            commit = module.commit

            def slow_commit(temporary, path):
                time.sleep(DELAY_SECONDS)
                commit(temporary, path)
                time.sleep(DELAY_SECONDS)

            module.commit = slow_commit

        spec.loader.exec_module = exec_module
        return spec


sys.meta_path.insert(0, _SlowCommits())
