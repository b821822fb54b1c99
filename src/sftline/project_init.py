"""`sftline init`: write a commented sftline.yaml and an empty .sftline/ state folder."""

from __future__ import annotations

import re
import shutil
from importlib import resources
from pathlib import Path

import yaml

from sftline.config import CONFIG_FILE, Project, parse_config
from sftline.errors import ConfigError
from sftline.record.workspace import Workspace
from sftline.safe_yaml import load_yaml

PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
"""Values written without quotes when YAML reads them back as the same string (not `null`, `1.0`)."""
SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def yaml_scalar(value: str | None) -> str:
    """`value` as a YAML scalar on one line that reads back as exactly `value` (null for None): a
    double-quoted string whose every character YAML would not keep as it is (a line break, a
    control character, U+2028) is escaped, so no value can end its line and start a key."""
    if value is None:
        return "null"
    if PLAIN.fullmatch(value) and yaml.safe_load(value) == value:  # a name as it is: minilm-l6
        return value
    return '"' + "".join(_yaml_char(char) for char in value) + '"'


def _yaml_char(char: str) -> str:
    if char in ('"', "\\"):
        return "\\" + char
    if char in SHORT_ESCAPES:
        return SHORT_ESCAPES[char]
    code = ord(char)
    printable = 0x20 <= code <= 0x7E or 0xA0 <= code <= 0xD7FF or 0xE000 <= code <= 0xFFFD or code >= 0x10000
    if printable and char not in "\u2028\u2029\ufeff":
        return char
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def render_template(
    name: str,
    task: str,
    labels: list[str] | None,
    abstention: str | None,
    base_model: str | None = None,
    system_prompt: str | None = None,
) -> str:
    template = resources.files("sftline").joinpath("templates/sftline.yaml").read_text(encoding="utf-8")
    if labels:
        output_kind = "labels"
        output_extra = f"    labels: [{', '.join(yaml_scalar(label) for label in labels)}]\n"
    else:
        output_kind = "labels" if task == "classify" else "text"
        output_extra = (
            "    # labels: [billing, refund, out_of_scope]   (kind labels; empty: the labels in the data)\n"
        )
    prompt = system_prompt or ("You are a helpful assistant." if task == "chat" else None)
    return template.format(
        name=yaml_scalar(name),
        base_model=yaml_scalar(base_model),
        task=yaml_scalar(task),
        system_prompt=yaml_scalar(prompt),
        output_kind=output_kind,
        output_extra=output_extra,
        abstention=yaml_scalar(abstention),
    )


def init_project(
    folder: Path,
    *,
    name: str | None = None,
    task: str = "chat",
    labels: list[str] | None = None,
    abstention: str | None = None,
    base_model: str | None = None,
    system_prompt: str | None = None,
) -> Project:
    """Create a project in `folder` (new or existing). Everything is checked before anything is
    written; the record is created before sftline.yaml, which is written last, so a failed init
    leaves no project behind and can simply be run again."""
    folder = folder.resolve()
    config_path = folder / CONFIG_FILE
    _check_folder(folder)
    if config_path.exists():
        raise ConfigError(f"{config_path} already exists; this folder is a project already")
    text = render_template(name or folder.name, task, labels, abstention, base_model, system_prompt)
    project = Project(folder, parse_config(load_yaml(text), str(config_path)))
    created = [path for path in (folder, project.state_dir) if not path.exists()]
    try:
        project.objects_dir.mkdir(parents=True, exist_ok=True)
        project.models_cache_dir.mkdir(parents=True, exist_ok=True)
        Workspace.open(project).close()
    except BaseException:
        _remove_first(created)
        raise
    try:
        with config_path.open("x", encoding="utf-8") as handle:  # never over another init's file
            handle.write(text)
    except FileExistsError:  # another init won the race: the project is its own, left as it is
        raise ConfigError(f"{config_path} already exists; this folder is a project already") from None
    except BaseException:
        config_path.unlink(missing_ok=True)
        _remove_first(created)
        raise
    return project


def _remove_first(created: list[Path]) -> None:
    """Remove the outermost folder this init created (the others are inside it)."""
    if created:
        shutil.rmtree(created[0], ignore_errors=True)


def _check_folder(folder: Path) -> None:
    """Refuse a project folder that is a file, or lies under one."""
    for path in (folder, *folder.parents):
        if path.exists():
            if not path.is_dir():
                raise ConfigError(f"{path} is a file; `sftline init` needs a folder (new or existing)")
            return
