"""Durable sandboxes through the sync and async clients: pause (den's
suspend) keeps memory, processes and files; connect resumes them; a second
pause is the SDK's "already paused" (False, from the API's 409);
lifecycle on_timeout "pause" (the API's autoPause) pauses a sandbox at its
timeout instead of killing it."""

import asyncio
import time

import pytest

from e2b import AsyncSandbox, Sandbox, SandboxQuery, SandboxState

from conftest import RUN_ID, create_async, create_sync, wait_for

# COUNTER rewrites /tmp/count atomically every 50 ms; a restarted process
# would count again from 1.
COUNTER = "i=0; while true; do i=$((i+1)); echo $i > /tmp/count.tmp && mv /tmp/count.tmp /tmp/count; sleep 0.05; done"


def state(info):
    return str(getattr(info.state, "value", info.state))


def kill_quietly(sbx):
    try:
        sbx.kill()
    except Exception:  # noqa: BLE001
        pass


async def kill_quietly_async(sbx):
    try:
        await sbx.kill()
    except Exception:  # noqa: BLE001
        pass


async def wait_for_async(fn, what, timeout=20.0, every=0.1):
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            last = await fn()
            if last:
                return last
        except Exception as e:  # noqa: BLE001 - keep polling
            last = e
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
        await asyncio.sleep(every)


def query(suite, st):
    return SandboxQuery(state=[st], metadata={"denTestRun": RUN_ID, "suite": suite})


# --- sync --------------------------------------------------------------------

def count(sbx):
    return int(sbx.files.read("/tmp/count").strip())


def test_pause_connect_sync():
    sbx = create_sync(metadata={"suite": "py-pause"})
    try:
        h = sbx.commands.run(COUNTER, background=True)
        h.disconnect()  # a pause ends the stream; the process keeps running
        wait_for(lambda: count(sbx) >= 20, "the counter to reach 20")
        sbx.files.write("/home/user/kept.txt", "kept across pause")
        before = count(sbx)

        assert sbx.pause() is True
        assert state(sbx.get_info()) == "paused"
        listed = Sandbox.list(query=query("py-pause", SandboxState.PAUSED)).next_items()
        assert [(s.sandbox_id, state(s)) for s in listed] == [(sbx.sandbox_id, "paused")]
        assert Sandbox.list(query=query("py-pause", SandboxState.RUNNING)).next_items() == []

        # A second pause: the API answers 409, which the SDK reports as False.
        assert sbx.pause() is False
        assert Sandbox.pause(sbx.sandbox_id) is False

        again = Sandbox.connect(sbx.sandbox_id)
        assert again.sandbox_id == sbx.sandbox_id
        assert state(again.get_info()) == "running"
        assert again.files.read("/home/user/kept.txt") == "kept across pause"
        after = count(again)
        assert after >= before, f"the counter went back from {before} to {after}: the process restarted"
        wait_for(lambda: count(again) > after, "the counter to continue after the resume")
        pids = [p.pid for p in again.commands.list()]
        assert h.pid in pids, pids
        assert again.commands.run("echo resumed").stdout == "resumed\n"
    finally:
        kill_quietly(sbx)


def test_auto_pause_sync():
    sbx = create_sync(metadata={"suite": "py-autopause"}, timeout=5, lifecycle={"on_timeout": "pause"})
    try:
        sbx.files.write("/tmp/kept.txt", "auto-paused")
        wait_for(lambda: state(Sandbox.get_info(sbx.sandbox_id)) == "paused", "the timeout to pause the sandbox", timeout=60, every=0.25)
        time.sleep(1)  # still paused a moment later: the timer did not kill it
        assert state(Sandbox.get_info(sbx.sandbox_id)) == "paused"

        again = Sandbox.connect(sbx.sandbox_id, timeout=120)
        assert state(again.get_info()) == "running"
        assert again.files.read("/tmp/kept.txt") == "auto-paused"
        assert again.commands.run("echo back").stdout == "back\n"
    finally:
        kill_quietly(sbx)


# --- async -------------------------------------------------------------------

async def count_async(sbx):
    return int((await sbx.files.read("/tmp/count")).strip())


@pytest.mark.asyncio(loop_scope="module")
async def test_pause_connect_async():
    sbx = await create_async(metadata={"suite": "py-pause-async"})
    try:
        h = await sbx.commands.run(COUNTER, background=True)
        await h.disconnect()
        await wait_for_async(lambda: _at_least(sbx, 20), "the counter to reach 20")
        await sbx.files.write("/home/user/kept.txt", "kept across pause")
        before = await count_async(sbx)

        assert await sbx.pause() is True
        assert state(await sbx.get_info()) == "paused"
        listed = await AsyncSandbox.list(query=query("py-pause-async", SandboxState.PAUSED)).next_items()
        assert [(s.sandbox_id, state(s)) for s in listed] == [(sbx.sandbox_id, "paused")]
        assert await sbx.pause() is False
        assert await AsyncSandbox.pause(sbx.sandbox_id) is False

        again = await AsyncSandbox.connect(sbx.sandbox_id)
        assert state(await again.get_info()) == "running"
        assert await again.files.read("/home/user/kept.txt") == "kept across pause"
        after = await count_async(again)
        assert after >= before, f"the counter went back from {before} to {after}: the process restarted"
        await wait_for_async(lambda: _at_least(again, after + 1), "the counter to continue after the resume")
        pids = [p.pid for p in await again.commands.list()]
        assert h.pid in pids, pids
        assert (await again.commands.run("echo resumed")).stdout == "resumed\n"
    finally:
        await kill_quietly_async(sbx)


async def _at_least(sbx, n):
    return await count_async(sbx) >= n


@pytest.mark.asyncio(loop_scope="module")
async def test_auto_pause_async():
    sbx = await create_async(metadata={"suite": "py-autopause-async"}, timeout=5, lifecycle={"on_timeout": "pause"})
    try:
        await sbx.files.write("/tmp/kept.txt", "auto-paused")

        async def is_paused():
            return state(await AsyncSandbox.get_info(sbx.sandbox_id)) == "paused"

        await wait_for_async(is_paused, "the timeout to pause the sandbox", timeout=60, every=0.25)
        await asyncio.sleep(1)  # still paused a moment later: the timer did not kill it
        assert await is_paused()

        again = await AsyncSandbox.connect(sbx.sandbox_id, timeout=120)
        assert state(await again.get_info()) == "running"
        assert await again.files.read("/tmp/kept.txt") == "auto-paused"
        # traffic to a paused sandbox resumes it too
        assert await AsyncSandbox.pause(sbx.sandbox_id) is True
        assert (await sbx.commands.run("echo back")).stdout == "back\n"
    finally:
        await kill_quietly_async(sbx)
