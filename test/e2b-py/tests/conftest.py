"""Shared set-up: the unmodified e2b PyPI SDK against den's E2B facade,
configured only by the variables `den up` prints (and writes to
<data-dir>/env)."""

import os
import time
import uuid

import pytest
import pytest_asyncio

from e2b import AsyncSandbox, Sandbox

for _name in ("E2B_API_URL", "E2B_SANDBOX_URL", "E2B_API_KEY"):
    if not os.environ.get(_name):
        raise pytest.UsageError(
            f"{_name} is not set: start den (`den up`) and "
            'eval "$(cat <data-dir>/env)" first'
        )

# The facade template the scenario runs in: den's Debian base image.
TEMPLATE = os.environ.get("E2B_TEST_TEMPLATE", "base")
# Tags every sandbox this run creates, so list filters only see ours.
RUN_ID = str(uuid.uuid4())
BAD_KEY = "e2b_" + "0" * 40
SANDBOX_TIMEOUT = 900  # seconds; sandboxes must outlive a slow run


def meta(**kw):
    return {"denTestRun": RUN_ID, **kw}


def create_sync(**kw):
    metadata = meta(**kw.pop("metadata", {}))
    kw.setdefault("timeout", SANDBOX_TIMEOUT)
    return Sandbox.create(TEMPLATE, metadata=metadata, **kw)


async def create_async(**kw):
    metadata = meta(**kw.pop("metadata", {}))
    kw.setdefault("timeout", SANDBOX_TIMEOUT)
    return await AsyncSandbox.create(TEMPLATE, metadata=metadata, **kw)


def wait_for(fn, what, timeout=20.0, every=0.1):
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            last = fn()
            if last:
                return last
        except Exception as e:  # noqa: BLE001 - keep polling
            last = e
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
        time.sleep(every)


@pytest.fixture(scope="module")
def sandbox():
    sbx = create_sync(
        metadata={"suite": "py-sync"},
        envs={"DEN_CREATE_ENV": "from-create", "DEN_OVERRIDE": "create"},
    )
    yield sbx
    try:
        sbx.kill()
    except Exception:  # noqa: BLE001
        pass


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def async_sandbox():
    sbx = await create_async(
        metadata={"suite": "py-async"},
        envs={"DEN_CREATE_ENV": "from-create", "DEN_OVERRIDE": "create"},
    )
    yield sbx
    try:
        await sbx.kill()
    except Exception:  # noqa: BLE001
        pass
