"""E2B's template-build API with the PyPI SDK: sync `Template.build` and
async `AsyncTemplate.build` (as Harbor's e2b environment calls them), the
builder (from_image with copy/run_cmd/set_envs/set_workdir, and
from_dockerfile), exists/alias_exists, tags, then Sandbox.create(name) runs
in what was built; a failing step raises BuildException naming it."""

import os
import re

import httpx
import pytest

from e2b import (
    AsyncSandbox,
    AsyncTemplate,
    BuildException,
    Sandbox,
    SandboxException,
    Template,
)

from conftest import RUN_ID, TEMPLATE, meta

DATA = "hello from the build context\n"


def name(what):
    """A template name unique to this run."""
    return f"den-py-{what}-{RUN_ID[:8]}"


def delete_template(id_or_name):
    """Remove a template through the API (the SDK has no call for it)."""
    try:
        httpx.delete(
            f"{os.environ['E2B_API_URL']}/templates/{id_or_name}",
            headers={"X-API-KEY": os.environ["E2B_API_KEY"]},
            timeout=30,
        )
    except Exception:  # noqa: BLE001 - best effort cleanup
        pass


@pytest.fixture(scope="module")
def context_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("template-context")
    (d / "data.txt").write_text(DATA)
    return d


@pytest.fixture
def templates():
    """Names of the templates a test builds, deleted after it."""
    names = []
    yield names
    for n in names:
        delete_template(n)


def image_template(cls, context_dir):
    return (
        cls(file_context_path=str(context_dir))
        .from_image(TEMPLATE)
        .copy("data.txt", "/opt/data.txt")
        .run_cmd("echo built > /opt/built", user="root")
        .set_envs({"A": "1"})
        .set_workdir("/opt")
    )


def run(sbx, cmd):
    return sbx.commands.run(cmd).stdout


# --- sync -------------------------------------------------------------------


def test_sync_build_and_create(context_dir, templates):
    alias = name("sync")
    templates.append(alias)
    logs = []
    info = Template.build(
        image_template(Template, context_dir), alias, cpu_count=1, memory_mb=1024, on_build_logs=logs.append
    )
    assert info.name == alias and info.template_id and info.build_id
    assert info.tags == ["default"]
    text = "\n".join(e.message for e in logs)
    assert "Uploaded 'data.txt'" in text
    assert f"Building template {alias} ({info.template_id})" in text
    assert "Build finished in" in text

    assert Template.exists(alias) is True
    assert Template.alias_exists(alias) is True
    assert Template.exists(alias + "-nope") is False

    sbx = Sandbox.create(alias, timeout=300, metadata=meta(suite="py-template"))
    try:
        assert run(sbx, "cat /opt/built") == "built\n"
        assert sbx.files.read("/opt/data.txt") == DATA
        assert run(sbx, 'echo "$A"; pwd; whoami') == "1\n/opt\nuser\n"
        assert sbx.get_info().template_id == info.template_id
    finally:
        sbx.kill()


def test_sync_tags(templates):
    alias = name("sync-tags")
    templates.append(alias)
    t = Template().from_image(TEMPLATE).run_cmd("echo tagged > /opt/tagged", user="root")
    info = Template.build(t, f"{alias}:v1")
    assert info.tags == ["v1"]
    assigned = Template.assign_tags(f"{alias}:v1", ["stable"])
    assert assigned.tags == ["stable"] and assigned.build_id == info.build_id
    tags = Template.get_tags(info.template_id)
    assert sorted(t.tag for t in tags) == ["stable", "v1"]
    sbx = Sandbox.create(f"{alias}:stable", timeout=300, metadata=meta(suite="py-template"))
    try:
        assert run(sbx, "cat /opt/tagged") == "tagged\n"
    finally:
        sbx.kill()
    Template.remove_tags(alias, ["stable"])
    assert [t.tag for t in Template.get_tags(alias)] == ["v1"]
    with pytest.raises(SandboxException):
        Sandbox.create(f"{alias}:stable")


def test_sync_dockerfile(templates):
    alias = name("sync-df")
    templates.append(alias)
    dockerfile = "\n".join(
        [
            f"FROM {TEMPLATE}",
            "ENV GREETING=hi",
            'RUN echo "$GREETING from the dockerfile" > /opt/df.txt',
            "WORKDIR /srv",
        ]
    )
    Template.build(Template().from_dockerfile(dockerfile), alias)
    sbx = Sandbox.create(alias, timeout=300, metadata=meta(suite="py-template"))
    try:
        assert run(sbx, "cat /opt/df.txt") == "hi from the dockerfile\n"
        assert run(sbx, 'echo "$GREETING"; pwd; whoami') == "hi\n/srv\nuser\n"
    finally:
        sbx.kill()


def test_sync_failing_step(templates):
    alias = name("sync-fail")
    templates.append(alias)
    t = Template().from_image(TEMPLATE).run_cmd("echo about to fail; exit 3")
    logs = []
    with pytest.raises(BuildException) as ei:
        Template.build(t, alias, on_build_logs=logs.append)
    assert re.search(r"step 1/1 RUN echo about to fail; exit 3 failed: .*3", str(ei.value)), str(ei.value)
    assert "about to fail" in "\n".join(e.message for e in logs)
    assert Template.exists(alias) is False


# --- async, as Harbor's e2b environment --------------------------------------


@pytest.mark.asyncio(loop_scope="module")
async def test_async_build_like_harbor(context_dir, templates):
    alias = name("async") + "__0123abcd"
    templates.append(alias)
    assert await AsyncTemplate.alias_exists(alias) is False
    dockerfile = "\n".join(
        [
            f"FROM {TEMPLATE}",
            "WORKDIR /app",
            "COPY data.txt /app/data.txt",
            "RUN cat /app/data.txt > /app/copied.txt",
        ]
    )
    t = AsyncTemplate(file_context_path=str(context_dir)).from_dockerfile(dockerfile)
    logs = []
    info = await AsyncTemplate.build(t, alias=alias, cpu_count=1, memory_mb=1024, on_build_logs=logs.append)
    assert info.template_id and info.name == alias
    assert await AsyncTemplate.alias_exists(alias) is True
    assert await AsyncTemplate.exists(alias) is True

    sbx = await AsyncSandbox.create(template=alias, metadata=meta(suite="py-template-async"), timeout=300)
    try:
        r = await sbx.commands.run("cat /app/copied.txt; pwd; whoami", user="root")
        assert r.stdout == DATA + "/app\nroot\n"
        assert (await sbx.commands.run("whoami")).stdout == "user\n"
        assert (await sbx.get_info()).template_id == info.template_id
    finally:
        await sbx.kill()


@pytest.mark.asyncio(loop_scope="module")
async def test_async_failing_step(templates):
    alias = name("async-fail")
    templates.append(alias)
    t = AsyncTemplate().from_image(TEMPLATE).run_cmd("echo about to fail; exit 3")
    with pytest.raises(BuildException) as ei:
        await AsyncTemplate.build(t, alias)
    assert "RUN echo about to fail; exit 3 failed" in str(ei.value)
    assert await AsyncTemplate.exists(alias) is False
