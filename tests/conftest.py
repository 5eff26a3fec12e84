"""Shared test setup. GPU tests are skipped here and only here: mark them `@pytest.mark.cuda` (or use the
`device` fixture) and they run wherever torch sees a CUDA GPU."""
from pathlib import Path

import numpy as np
import pytest
import torch

HAS_CUDA = torch.cuda.is_available()
requires_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU (none visible to torch)")

DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.cuda, requires_cuda])]


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("cuda") and not HAS_CUDA:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA GPU (none visible to torch)"))


@pytest.fixture(params=DEVICES)
def device(request):
    return request.param


@pytest.fixture
def one_thread():
    """Torch on one thread for the test: tiny models gain nothing from threads, and on a busy 2-core machine two
    OpenMP threads can stall a small op tenfold. Use with `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def photo():
    """The bundled photo (assets/astronaut.png) as [512, 512, 3] uint8 RGB, read-only (shared by the tests)."""
    from PIL import Image
    image = np.array(Image.open(Path(__file__).resolve().parent.parent / "assets" / "astronaut.png").convert("RGB"))
    image.flags.writeable = False
    return image


@pytest.fixture(scope="module")
def chrome():
    """A headless Chromium driven over WebDriver (tests/webdriver_client.py), closed after the module; the test
    skips when this machine has no chromium + chromedriver (scripts/setup.sh test installs them)."""
    from webdriver_client import BrowserMissing, Chrome, find_browser
    try:
        find_browser()
    except BrowserMissing as e:
        pytest.skip(str(e))
    browser = Chrome.start()
    try:
        yield browser
    finally:
        browser.close()
