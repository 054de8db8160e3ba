"""The deployment package, rebuilt offline the way the pinned azd builds it, is exactly the app.

scripts/package_app.py replays azd 1.29.0's createDeployableZip and the gitignore matcher it uses
(denormal/go-gitignore); make check-infra fails unless the package is shared/, the function folders, host.json
and requirements.txt, every file of them and nothing else. CI compares it with a real `azd package`.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import pytest

from tests.infra_support import ROOT, load_script

package = load_script("package_app")


def write(path: Path, text: str = "") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A small function app laid out like this one, with the repository's own .funcignore."""
    root = tmp_path / "app"
    write(root / "shared" / "__init__.py")
    write(root / "shared" / "sync" / "jobs.py", "JOBS = ()\n")
    write(root / "fetch_things" / "function.json", "{}")
    write(root / "fetch_things" / "__init__.py")
    write(root / "host.json", "{}")
    write(root / "requirements.txt", "azure-functions\n")
    for extra in ("tests/test_x.py", "tools/consent.py", "devhost/__init__.py", "infra/main.bicep", "README.md"):
        write(root / extra)
    write(root / "node_modules" / "azurite" / "package.json", "{}")
    write(root / "shared" / "__pycache__" / "jobs.cpython-311.pyc")
    write(root / ".git" / "HEAD", "ref: refs/heads/main\n")
    write(root / "local.settings.json", "{}")
    write(root / ".funcignore", (ROOT / ".funcignore").read_text(encoding="utf-8"))
    return root


def test_the_repository_package_is_exactly_the_app() -> None:
    assert package.check(ROOT) == []
    tops = {f.split("/", 1)[0] for f in package.package_files(ROOT)}
    assert tops == {"shared", "host.json", "requirements.txt", *package.function_folders(ROOT)}


def test_the_workflow_pins_the_azd_this_replica_models() -> None:
    assert package.check_pinned_azd(ROOT) == []
    workflow = (ROOT / ".github" / "workflows" / "ci.yml").read_text(encoding="utf-8")
    assert re.search(rf'AZD_VERSION: "{re.escape(package.AZD_VERSION)}"', workflow)


def test_a_small_app_packages_only_its_code(project: Path) -> None:
    assert package.package_files(project) == [
        "fetch_things/__init__.py",
        "fetch_things/function.json",
        "host.json",
        "requirements.txt",
        "shared/__init__.py",
        "shared/sync/jobs.py",
    ]
    assert package.check(project) == []


def test_a_new_top_level_folder_not_in_funcignore_fails(project: Path) -> None:
    write(project / "notes" / "todo.md", "ship it")

    assert package.check(project) == [
        "the package holds the folder notes, which is not part of the app: add it to .funcignore"
    ]


def test_a_funcignore_that_leaves_out_part_of_the_app_fails(project: Path) -> None:
    with (project / ".funcignore").open("a", encoding="utf-8") as funcignore:
        funcignore.write("*.json\n")

    problems = package.check(project)

    assert "the package misses fetch_things/function.json, part of the app: .funcignore leaves it out" in problems
    assert "the package misses host.json, part of the app: .funcignore leaves it out" in problems


def test_compiled_python_in_the_package_fails(project: Path) -> None:
    text = (project / ".funcignore").read_text(encoding="utf-8").replace("__pycache__/\n", "").replace("*.pyc\n", "")
    (project / ".funcignore").write_text(text, encoding="utf-8")

    assert package.check(project) == [
        "the package holds compiled Python shared/__pycache__/jobs.cpython-311.pyc: .funcignore must leave out "
        "__pycache__/, *.pyc"
    ]


def test_without_funcignore_only_venvs_and_pycache_stay_out(project: Path) -> None:
    (project / ".funcignore").unlink()
    write(project / ".venv" / "pyvenv.cfg")

    files = package.package_files(project)

    assert "tests/test_x.py" in files and "node_modules/azurite/package.json" in files and ".git/HEAD" in files
    assert not any(f.startswith((".venv/", "shared/__pycache__/")) or f == "local.settings.json" for f in files)


def test_azd_always_leaves_out_local_settings_the_ignore_file_and_dot_azure(project: Path) -> None:
    write(project / "shared" / "local.settings.json", "{}")
    write(project / ".azure" / "prod" / ".env", "X=1")

    files = package.package_files(project)

    assert ".funcignore" not in files and "shared/local.settings.json" not in files
    assert not any(f.startswith(".azure/") for f in files)


def test_a_missing_function_folder_file_is_found_by_its_function_json(project: Path) -> None:
    write(project / "serve_things" / "function.json", "{}")
    write(project / "serve_things" / "__init__.py")

    assert package.function_folders(project) == ["fetch_things", "serve_things"]
    assert package.check(project) == []


@pytest.mark.parametrize(
    ("pattern", "path", "is_dir", "ignored"),
    [
        ("tests/", "tests", True, True),
        ("tests/", "shared/tests", True, True),  # unanchored: any depth
        ("/tests/", "shared/tests", True, False),  # anchored: the root only
        ("/tests/", "tests", False, False),  # a directory pattern never matches a file
        ("*.pyc", "shared/a/b.pyc", False, True),
        ("/*_env/", "app_env", True, True),
        ("/*_env/", "shared/x_env", True, True),  # azd's matcher: an anchored name's `*` also matches `/`
        ("infra/app", "infra/app", True, True),  # an inner slash: matched from the root
        ("infra/app", "x/infra/app", True, False),
        ("**/cache", "a/b/cache", True, True),
        (".git*", ".github", True, True),
    ],
)
def test_patterns_match_as_azd_s_matcher_does(pattern: str, path: str, is_dir: bool, ignored: bool) -> None:
    parsed = package.Pattern.parse(pattern)
    assert parsed is not None
    assert parsed.matches(path, is_dir) is ignored


def test_the_last_matching_pattern_decides_and_negation_re_includes() -> None:
    patterns = [p for p in (package.Pattern.parse(line) for line in ("*.md", "!README.md")) if p]
    assert not package._ignored(patterns, "README.md", False)
    assert package._ignored(patterns, "NOTES.md", False)


def test_a_byte_order_mark_is_dropped_before_parsing(project: Path) -> None:
    (project / ".funcignore").write_bytes(b"\xef\xbb\xbftests/\n")

    assert [p.text for p in package.read_ignore(project) or []] == ["tests/"]


def test_a_pattern_the_replica_does_not_model_is_reported(project: Path) -> None:
    (project / ".funcignore").write_text("foo\\ bar\n", encoding="utf-8")

    (problem,) = package.check(project)

    assert problem.startswith(".funcignore: escapes are not modelled")


def test_a_real_azd_zip_is_compared_file_by_file(project: Path, tmp_path: Path) -> None:
    archive = tmp_path / "api.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for name in [*package.package_files(project), "tools/consent.py"]:
            if name != "host.json":
                zipped.writestr(name, "")

    assert package.compare_zip(project, archive) == [
        "azd packaged tools/consent.py, which the offline replica leaves out",
        "the offline replica packages host.json, which azd left out",
    ]


def test_a_workflow_pinning_another_azd_fails(tmp_path: Path) -> None:
    write(tmp_path / ".github" / "workflows" / "ci.yml", 'env:\n  AZD_VERSION: "1.11.0"\n')

    (problem,) = package.check_pinned_azd(tmp_path)

    assert "pins azd ['1.11.0'] but scripts/package_app.py models azd 1.29.0" in problem
