"""The documentation is kept true: every internal link in README.md, docs/ and examples/ resolves
(file and #anchor), nothing links outside the repository's own files, every ```yaml block in
them is a Tollway config that the real loader accepts as written, and every file in examples/
is a complete config that loads."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tollway.config import ConfigError, load_settings

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "examples" / "README.md"]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.M | re.S)
ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)")


def _outside_code(text: str) -> str:
    """TEXT without fenced blocks and inline code, where link-like text is not a link."""
    return re.sub(r"`[^`\n]*`", "", FENCE.sub("", text))


def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    found: set[str] = set()
    for line in FENCE.sub("", page.read_text()).splitlines():
        m = re.match(r"^#{1,6}\s+(.*)$", line)
        if m:
            slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower().replace("`", "")).replace(" ", "-")
            found.add(slug)
    return found


def internal_links() -> list[tuple[Path, str]]:
    return [(page, target) for page in PAGES for target in LINK.findall(_outside_code(page.read_text()))
            if not re.match(r"^[a-z]+:", target)]


def test_the_pages_exist_and_the_readme_links_each() -> None:
    names = {p.name for p in (ROOT / "docs").glob("*.md")}
    assert {"configuration.md", "providers.md", "governance.md", "operations.md", "security.md", "api.md",
            "cli.md", "budgets.md", "audit.md", "dlp.md", "reliability.md", "architecture.md"} <= names
    readme_targets = {t.split("#")[0] for page, t in internal_links() if page.name == "README.md"}
    assert {f"docs/{n}" for n in names} <= readme_targets


@pytest.mark.parametrize(("page", "target"), internal_links(),
                         ids=lambda v: v.name if isinstance(v, Path) else str(v))
def test_every_internal_link_resolves(page: Path, target: str) -> None:
    assert "shared/" not in target, "never link outside the repository"
    path, _, anchor = target.partition("#")
    dest = (page.parent / path).resolve() if path else page
    assert dest.exists(), f"{page.name}: {target} does not exist"
    assert ROOT in dest.parents or dest == ROOT, f"{page.name}: {target} leaves the repository"
    if anchor:
        assert dest.suffix == ".md" and anchor in anchors(dest), f"{page.name}: no heading #{anchor} in {dest.name}"


def test_no_page_mentions_the_design_folder_outside_the_repository() -> None:
    for page in PAGES:
        assert "../shared" not in page.read_text(), page.name


def yaml_blocks() -> list[tuple[str, str]]:
    out = []
    for page in PAGES:
        for n, (lang, body) in enumerate(FENCE.findall(page.read_text())):
            if lang == "yaml":
                out.append((f"{page.relative_to(ROOT)}#{n}", body))
    return out


def _load(path: Path, monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    # The blocks read secrets from ${VARS}: give each a placeholder, as the operator's environment would.
    for name in set(ENV_REF.findall(text)):
        monkeypatch.setenv(name, f"placeholder-{name.lower()}")
    monkeypatch.setenv("DATABASE_URL", "postgresql://tollway@127.0.0.1:5432/tollway")
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/0")
    load_settings(path)


def test_there_are_config_blocks_to_check() -> None:
    assert len(yaml_blocks()) >= 6


@pytest.mark.parametrize(("where", "body"), yaml_blocks(), ids=[w for w, _ in yaml_blocks()])
def test_every_yaml_block_is_a_valid_config(where: str, body: str, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "block.yaml"
    path.write_text(body)
    try:
        _load(path, monkeypatch, body)
    except ConfigError as exc:
        pytest.fail(f"{where}: {exc}")


def test_the_examples_are_the_four_documented_set_ups() -> None:
    assert {p.name for p in EXAMPLES} == {"single-node.yaml", "postgres-redis-workers.yaml",
                                          "local-openai-compatible.yaml", "two-models-access.yaml"}


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_every_example_is_a_complete_valid_config(example: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = example.read_text()
    _load(example, monkeypatch, text)
    settings = load_settings(example)
    assert settings.models, example.name


def test_the_workers_example_shares_limits_and_uses_postgres(monkeypatch: pytest.MonkeyPatch) -> None:
    example = ROOT / "examples" / "postgres-redis-workers.yaml"
    _load(example, monkeypatch, example.read_text())
    s = load_settings(example)
    assert s.server.workers > 1 and s.limits.backend == "redis" and s.store.url.startswith("postgresql://")


def test_the_local_model_example_is_openai_compatible(monkeypatch: pytest.MonkeyPatch) -> None:
    s = load_settings(ROOT / "examples" / "local-openai-compatible.yaml")
    local = next(m for m in s.models if m.id == "qwen-local")
    assert local.primary.provider == "openai" and local.primary.resolved_base_url.startswith("http://127.0.0.1")


def _kinds_table(page: Path) -> dict[str, str]:
    """The kind -> default action rows of the DLP kinds table on PAGE (first column a `kind`, last the default)."""
    rows = {}
    for line in page.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        m = re.fullmatch(r"`([a-z0-9_]+)`", cells[0]) if len(cells) >= 3 else None
        if m and line.startswith("|"):
            rows[m.group(1)] = cells[-1]
    return rows


@pytest.mark.parametrize("page", [ROOT / "README.md", ROOT / "docs" / "dlp.md"], ids=["README", "dlp.md"])
def test_every_dlp_kind_is_listed_with_its_default_action(page: Path) -> None:
    """The README's DLP section and docs/dlp.md list every built-in kind with its example format and the
    action the default policy gives it (secrets redact, pii log, binary per the `binary` setting)."""
    from tollway.governance.dlp.policy import BUILTIN_KINDS, DlpConfig

    rows = _kinds_table(page)
    assert set(rows) >= set(BUILTIN_KINDS), sorted(set(BUILTIN_KINDS) - set(rows))
    defaults = DlpConfig().action_table(None)
    for kind, category in BUILTIN_KINDS.items():
        expected = defaults[kind]
        assert expected in rows[kind], (kind, category, rows[kind], expected)
