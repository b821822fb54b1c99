"""`sftline init`: write a commented sftline.yaml and an empty .sftline/ state folder."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from sftline.config import CONFIG_FILE, Project, load_config
from sftline.errors import ConfigError
from sftline.record.workspace import Workspace


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
        output_extra = f"    labels: {json.dumps(labels)}\n"
    else:
        output_kind = "labels" if task == "classify" else "text"
        output_extra = (
            "    # labels: [billing, refund, out_of_scope]   (kind labels; empty: the labels in the data)\n"
        )
    prompt = system_prompt or ("You are a helpful assistant." if task == "chat" else "null")
    return template.format(
        name=json.dumps(name),
        base_model=base_model or "null",
        task=task,
        system_prompt=json.dumps(prompt) if prompt != "null" else prompt,
        output_kind=output_kind,
        output_extra=output_extra,
        abstention=json.dumps(abstention) if abstention else "null",
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
    folder = folder.resolve()
    config_path = folder / CONFIG_FILE
    if config_path.exists():
        raise ConfigError(f"{config_path} already exists; this folder is a project already")
    folder.mkdir(parents=True, exist_ok=True)
    text = render_template(name or folder.name, task, labels, abstention, base_model, system_prompt)
    config_path.write_text(text, encoding="utf-8")
    project = Project(folder, load_config(config_path))
    (project.objects_dir).mkdir(parents=True, exist_ok=True)
    project.models_cache_dir.mkdir(parents=True, exist_ok=True)
    Workspace.open(project).close()
    return project
