"""What goes into an image and its tag: requirements discovery, runtime pins, tag, Dockerfile."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from runner import pipeline
from runner.errors import PipelineDefinitionError
from runner.packaging import (
    ImageError,
    Requirements,
    discover_requirements,
    image_tag,
    render_dockerfile,
    repository_name,
    runtime_pins,
    runtime_sources,
    runtime_version,
    write_context,
)
from runner.sdk import Pipeline, source_of

BASE_ID = "sha256:" + "a" * 64


# --- requirements ---------------------------------------------------------------------------


def test_declared_requirements_win_over_files(
    write_pipeline: Callable[..., Pipeline],
) -> None:
    flow = write_pipeline(
        requirements=["pandas>=2", "  six  ", "six"],
        files={"requirements.txt": "numpy\n"},
    )
    reqs = discover_requirements(flow.requirements, source_of(flow.func).root)
    assert reqs == Requirements(("pandas>=2", "six"), (), "declared on the pipeline")


def test_declared_empty_list_means_none_even_with_a_requirements_file(
    write_pipeline: Callable[..., Pipeline],
) -> None:
    flow = write_pipeline(requirements=[], files={"requirements.txt": "numpy\n"})
    assert discover_requirements(flow.requirements, source_of(flow.func).root).specs == ()


def test_requirements_txt_comments_includes_and_options(tmp_path: Path) -> None:
    (tmp_path / "base.txt").write_text("idna==3.7  # pinned\n")
    (tmp_path / "constraints.txt").write_text("six<2\n")
    (tmp_path / "requirements.txt").write_text(
        "# the pipeline's needs\n"
        "--extra-index-url https://pypi.example/simple\n"
        "-r base.txt\n"
        "-c constraints.txt\n"
        "\n"
        "Six>=1.16 ; python_version >= '3.8'\n"
        "pandas \\\n"
        "  >=2\n"
    )
    reqs = discover_requirements(None, str(tmp_path))
    assert reqs.specs == ("idna==3.7", "pandas >=2", "Six>=1.16 ; python_version >= '3.8'")
    assert reqs.options == (
        "--extra-index-url https://pypi.example/simple",
        f"-c {tmp_path / 'constraints.txt'}",
    )
    assert reqs.origin == str(tmp_path / "requirements.txt")


def test_editable_requirement_is_refused_clearly(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("-e .\n")
    with pytest.raises(ImageError, match="editable and cannot be installed in an image"):
        discover_requirements(None, str(tmp_path))


def test_pyproject_dependencies(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\ndependencies = ["scikit-learn>=1.4", "pandas"]\n'
    )
    reqs = discover_requirements(None, str(tmp_path))
    assert reqs.specs == ("pandas", "scikit-learn>=1.4")
    assert reqs.origin.endswith("pyproject.toml [project].dependencies")


def test_bad_pyproject_is_one_clear_line(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[project\n")
    with pytest.raises(ImageError, match=r"cannot read .*pyproject.toml"):
        discover_requirements(None, str(tmp_path))


def test_no_requirements_anywhere(tmp_path: Path) -> None:
    assert discover_requirements(None, str(tmp_path)) == Requirements(())
    assert discover_requirements(None, None) == Requirements(())


def test_pipeline_requirements_option() -> None:
    @pipeline(requirements=("six",))
    def declared() -> None: ...

    @pipeline
    def plain() -> None: ...

    assert declared.requirements == ["six"]
    assert plain.requirements is None
    with pytest.raises(PipelineDefinitionError, match="must be a list of strings"):
        pipeline(requirements="six")(lambda: None)  # type: ignore[call-overload]


# --- runtime and tag ------------------------------------------------------------------------


def test_runtime_pins_match_the_host() -> None:
    from importlib.metadata import version

    pins = runtime_pins()
    assert f"pydantic=={version('pydantic')}" in pins
    assert {p.split("==")[0] for p in pins} == {
        "pydantic", "fsspec", "cloudpickle", "cryptography", "filelock", "psutil",
    }  # fmt: skip


def test_runtime_sources_are_the_two_packages_without_bytecode() -> None:
    names = [name for name, _ in runtime_sources()]
    assert "runner/entrypoint.py" in names and "stacks/outputs.py" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert not [n for n in names if n.split("/")[0] not in ("runner", "stacks")]


def test_tag_is_deterministic_and_order_insensitive() -> None:
    runtime = runtime_version(runtime_pins())
    assert runtime == runtime_version(list(reversed(runtime_pins())))
    first = image_tag(BASE_ID, ["six", "pandas>=2"], runtime)
    assert first == image_tag(BASE_ID, ["pandas>=2", "six"], runtime)
    assert first == image_tag(BASE_ID, ("pandas>=2", "six", "six"), runtime)
    assert len(first) == 20 and all(c in "0123456789abcdef" for c in first)


def test_tag_changes_with_each_input() -> None:
    runtime = runtime_version(runtime_pins())
    tag = image_tag(BASE_ID, ["six"], runtime)
    assert image_tag(BASE_ID, ["six==1.17.0"], runtime) != tag
    assert image_tag(BASE_ID, ["six", "idna"], runtime) != tag
    assert image_tag("sha256:" + "b" * 64, ["six"], runtime) != tag
    assert image_tag(BASE_ID, ["six"], runtime_version(["pydantic==1.0"])) != tag


def test_runtime_version_follows_the_runtime_sources(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "runner" / "entrypoint.py"
    source.parent.mkdir()
    source.write_text("print('v1')\n")
    monkeypatch.setattr(
        "runner.packaging.runtime_sources", lambda: iter([("runner/entrypoint.py", source)])
    )
    before = runtime_version(["pydantic==2.0"])
    assert runtime_version(["pydantic==2.0"]) == before
    source.write_text("print('v2')\n")
    after = runtime_version(["pydantic==2.0"])
    assert after != before
    assert image_tag(BASE_ID, ["six"], after) != image_tag(BASE_ID, ["six"], before)


@pytest.mark.parametrize(
    ("pipeline_name", "expected"),
    [
        ("training", "mlstack/training"),
        ("Train_Model", "mlstack/train-model"),
        ("__weird  name!!", "mlstack/weird-name"),
        ("___", "mlstack/pipeline"),
    ],
)
def test_repository_names_are_valid(pipeline_name: str, expected: str) -> None:
    assert repository_name(pipeline_name) == expected


# --- Dockerfile and context -----------------------------------------------------------------


def test_dockerfile_orders_dependencies_before_runtime() -> None:
    text = render_dockerfile(
        "mlstack/base:bookworm", stack="dev", pipeline="train", runtime="0123456789abcdef"
    )
    lines = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    assert lines[0] == "FROM mlstack/base:bookworm AS deps"
    order = [
        "COPY wheels /tmp/wheels",
        "COPY requirements.txt /opt/mlstack/requirements.txt",
        "RUN python3 -m venv /opt/mlstack/venv && /opt/mlstack/venv/bin/pip install --no-index",
        "FROM mlstack/base:bookworm\n",
        "COPY --from=deps /opt/mlstack /opt/mlstack",
        "ENV PATH=/opt/mlstack/venv/bin:",
        "COPY runtime/ /opt/mlstack/",
        'LABEL mlstack.stack="dev" mlstack.pipeline="train" mlstack.runtime="0123456789abcdef"',
    ]
    positions = [next(i for i, ln in enumerate(lines) if (ln + "\n").startswith(o)) for o in order]
    assert positions == sorted(positions)
    assert "--find-links /tmp/wheels -r /opt/mlstack/requirements.txt" in text
    assert "PYTHONPATH=/opt/mlstack" in text
    # Nothing is fetched in the build and no credential or CA bundle is involved.
    for word in ("http://", "https://", "--cert", "ARG", "TOKEN", "SECRET", "PASSWORD"):
        assert word not in text


def test_labels_are_quoted() -> None:
    text = render_dockerfile("b", stack='we"ird', pipeline="p", runtime="r")
    assert 'mlstack.stack="we\\"ird"' in text


def _context(wheels: Path) -> bytes:
    out = io.BytesIO()
    write_context(out, "FROM x\n", ["six", "pydantic==2.0"], wheels)
    return out.getvalue()


def test_context_is_deterministic_and_complete(tmp_path: Path) -> None:
    (tmp_path / "six-1.17.0-py2.py3-none-any.whl").write_bytes(b"wheel")
    (tmp_path / "requirements.txt").write_text("six\n")
    first = _context(tmp_path)
    (tmp_path / "six-1.17.0-py2.py3-none-any.whl").touch()  # a new mtime changes nothing
    assert _context(tmp_path) == first
    with tarfile.open(fileobj=io.BytesIO(first)) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert tar.extractfile("requirements.txt").read() == b"six\npydantic==2.0\n"  # type: ignore[union-attr]
    assert {"Dockerfile", "requirements.txt", "wheels/six-1.17.0-py2.py3-none-any.whl"} <= set(
        members
    )
    assert "runtime/runner/entrypoint.py" in members
    assert "runtime/stacks/outputs.py" in members
    assert all(m.mtime == 0 and m.uid == 0 for m in members.values())
    assert not [n for n in members if n.endswith((".pem", ".crt")) or "__pycache__" in n]
