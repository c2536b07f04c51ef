"""Settings for the whole test run: tests/ and the lessons that nbval runs from notebooks/."""
import os

# The lessons' kernels inherit this: one torch thread each. The lessons' small convolutions gain nothing from a
# second thread, and on a busy machine (CI, other jobs) two threads per kernel oversubscribe the cores, which
# slowed a training cell more than tenfold here, past nbval's cell timeout. Set it yourself to test another count.
os.environ.setdefault("RESNET_COURSE_THREADS", "1")


def pytest_collection_modifyitems(config, items):
    """The lessons that nbval collects from notebooks/ are slow: each starts a kernel and trains its networks. They
    are marked here, not in the notebooks, so that `make test-fast` (-m "not slow") leaves them out."""
    import pytest

    for item in items:
        if item.path.suffix == ".ipynb":
            item.add_marker(pytest.mark.slow)
