"""The drift part of a monitoring pass: which version is serving, its references (training
inputs, evaluated answers), and every drift test that has the data to run, at a per-test level
that keeps the family's false-alarm rate at the configured one (`monitoring/drift.py` holds the
statistics)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from sftline.atomic import write_bytes
from sftline.data.example import Example
from sftline.monitoring import drift as tests
from sftline.monitoring.novel import novel_clusters
from sftline.monitoring.settings import MonitoringConfig
from sftline.monitoring.slis import Labelled
from sftline.record import queries
from sftline.record.schema import Prediction, Run, as_utc
from sftline.record.workspace import Workspace
from sftline.stations.check import ENCODER, LazyEncoder
from sftline.stations.models import find_base_model
from sftline.stations.versions import load_examples

Progress = Callable[[str], None]
MAX_CURRENT = 5000
"""Logged inputs the drift tests read at most (a seeded sample of a longer window)."""


@dataclass
class Serving:
    """The version monitoring compares traffic with: production, else whatever answered most."""

    model_name: str
    version: str | None
    run_name: str | None
    model_hash: str | None
    trained_on: str | None
    trained_at: datetime | None


def served_input(example: Example) -> str:
    """What the server logs as a request's prompt: the text, or the last user turn."""
    if example.messages is None:
        return example.text or ""
    users = [m.get("content") or "" for m in example.messages if m.get("role") == "user"]
    return users[-1] if users else example.prompt


def find_serving(session: Session, model_name: str, predictions: Sequence[Prediction]) -> Serving:
    model = queries.registered_model(session, model_name)
    production = queries.versions_in_stage(session, model, "production") if model is not None else []
    if production:
        version = production[0]
        run: Run | None = version.run
        ref: str | None = version.ref
    else:  # not registered or nothing promoted: the run that answered most of the window
        counts: dict[str, int] = {}
        for p in predictions:
            counts[p.model_version] = counts.get(p.model_version, 0) + 1
        ref = max(counts, key=lambda k: counts[k]) if counts else None
        run = queries.run_named(session, ref) if ref is not None else None
    if run is None:
        return Serving(model_name, ref, None, None, None, None)
    data, _ = queries.recorded_versions(session, run)
    return Serving(model_name, ref, run.name, run.model_hash, data.ref, as_utc(data.created_at))


def _tokenizer(workspace: Workspace) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(find_base_model(workspace, ENCODER).path))


def _reference_inputs(workspace: Workspace, serving: Serving, cfg: MonitoringConfig) -> list[str]:
    ref = cfg.drift.reference or serving.trained_on
    if ref is None:
        return []
    with workspace.record.session() as session:
        version = queries.resolve(session, ref)
    texts = [served_input(e) for e in load_examples(workspace, version)]
    texts = [t for t in texts if t.strip()]
    if len(texts) > cfg.drift.reference_max:
        texts = random.Random(cfg.drift.seed).sample(texts, cfg.drift.reference_max)
    return texts


def _reference_answers(
    session: Session, model_hash: str | None, datasets: Sequence[str] = ()
) -> list[tuple[str, str, float | None]]:
    """(output, target, confidence) of the serving model on the data it was evaluated on (the
    newest evaluation per dataset version; only `datasets` when given): how it answers data like
    its training data, the reference for labels, confidence and calibration."""
    if model_hash is None:
        return []
    wanted = {queries.resolve(session, ref).dataset_id for ref in datasets}
    newest: dict[int, Any] = {}
    for evaluation in reversed(queries.evaluations_of_model(session, model_hash)):  # newest first
        if wanted and evaluation.dataset_version.dataset_id not in wanted:
            continue
        newest.setdefault(evaluation.dataset_version_id, evaluation)
    rows = []
    for evaluation in newest.values():
        rows += [
            (o.output.strip(), o.target.strip(), o.confidence)
            for o in queries.eval_outputs(session, evaluation)
        ]
    return rows


def reference_vectors(
    workspace: Workspace, encode: Callable[[Sequence[str]], np.ndarray], texts: list[str]
) -> np.ndarray:
    """The reference inputs' embeddings, kept in `.sftline/cache/embeddings/` under a hash of the
    encoder and the texts: every pass of `sftline monitor` (and `--watch`) embeds the same
    reference, which is most of a pass's time. A missing or unreadable file is computed again."""
    encoder = find_base_model(workspace, ENCODER).content_hash
    key = hashlib.sha256("\n".join([encoder, *texts]).encode()).hexdigest()
    path = workspace.project.embeddings_cache_dir / f"{key}.npy"
    with contextlib.suppress(OSError, ValueError):
        vectors = np.load(path, allow_pickle=False)
        if vectors.shape[0] == len(texts):
            return vectors
    vectors = np.asarray(encode(texts), dtype=np.float32)
    buffer = io.BytesIO()
    np.save(buffer, vectors, allow_pickle=False)
    write_bytes(path, buffer.getvalue())
    return vectors


def drift_checks(
    workspace: Workspace,
    serving: Serving,
    predictions: Sequence[Prediction],
    labelled: Sequence[Labelled],
    cfg: MonitoringConfig,
    *,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Every drift test that has enough data, at a per-test level that keeps the family's
    false-alarm rate at the configured one, and the clusters of new inputs."""
    settings = cfg.drift
    rng = random.Random(settings.seed)
    current = [p.prompt for p in predictions if p.prompt.strip()]
    if len(current) > MAX_CURRENT:  # a long window: a seeded sample keeps time and memory bounded
        current = rng.sample(current, MAX_CURRENT)
    # Answers are compared with the serving version's own evaluated answers: its traffic only
    # (not a canary's), and only where answers are labels (free text differs with max_tokens).
    own = [p for p in predictions if serving.version is None or p.model_version == serving.version]
    labels_task = workspace.project.config.contract.output.kind == "labels" or any(
        p.endpoint == "classify" for p in own
    )
    say = progress or (lambda _: None)
    say(f"drift: reading the reference ({settings.reference or serving.trained_on or 'no training data'})")
    reference = _reference_inputs(workspace, serving, cfg)
    with workspace.record.session() as session:
        answers = _reference_answers(session, serving.model_hash, settings.reference_on)
    minimum = settings.min_samples
    answered = [p for p in own if (p.label or p.output).strip()]
    now_scored = [row for row in labelled if row.confidence is not None]
    # The family's level is split over the tests that will run (a test short of samples is not
    # planned, so it costs the others no power).
    planned = []
    if reference and len(current) >= minimum:
        planned += ["input_length", "input_tokens", "embedding"]
    if answers and labels_task and len(answered) >= minimum:
        planned += ["predicted_label", "confidence"]
    if answers and labels_task and len(now_scored) >= minimum:
        planned += ["calibration"]
    alpha = tests.bonferroni(settings.false_alarm_rate, max(len(planned), 1))
    # A permutation p-value is never below 1 / (permutations + 1): enough of them to reach alpha.
    permutations = max(settings.permutations, math.ceil(10 / alpha))
    results: list[Any] = []
    novel: list[dict[str, Any]] = []
    if "input_length" in planned:
        say(f"drift: tokenizing {len(reference) + len(current)} inputs")
        tokenizer = _tokenizer(workspace)
        ref_tokens = [tokenizer.tokenize(t) for t in reference]
        cur_tokens = [tokenizer.tokenize(t) for t in current]
        results.append(
            tests.length_drift(
                [len(t) for t in ref_tokens],
                [len(t) for t in cur_tokens],
                alpha=alpha,
                min_psi=settings.min_psi,
                min_samples=minimum,
            )  # fmt: skip
        )
        results.append(
            tests.token_drift(
                ref_tokens,
                cur_tokens,
                alpha=alpha,
                min_samples=minimum,
                seed=settings.seed,
                permutations=permutations,
            )  # fmt: skip
        )
        say(f"drift: embedding {len(reference) + len(current)} inputs with {ENCODER}")
        encode = LazyEncoder(workspace)
        ref_vec, cur_vec = reference_vectors(workspace, encode, reference), encode(current)
        results.append(
            tests.embedding_drift(
                ref_vec,
                cur_vec,
                alpha=alpha,
                permutations=permutations,
                seed=settings.seed,
                min_samples=minimum,
            )
        )
        novel = novel_clusters(ref_vec, cur_vec, current, seed=settings.seed, reference_texts=reference)
    if "predicted_label" in planned:
        results.append(
            tests.label_drift(
                [output for output, _, _ in answers],
                [(p.label or p.output).strip() for p in answered],
                alpha=alpha,
                min_samples=minimum,
                seed=settings.seed,
                permutations=permutations,
            )
        )
        results.append(
            tests.confidence_drift(
                [float(c) for _, _, c in answers if c is not None],
                [float(p.confidence) for p in answered if p.confidence is not None],
                alpha=alpha,
                min_samples=minimum,
            )
        )
    if "calibration" in planned:
        scored = [(o, t, c) for o, t, c in answers if c is not None]
        results.append(
            tests.calibration_drift(
                [float(c) for _, _, c in scored if c is not None],
                [o == t for o, t, _ in scored],
                [float(row.confidence) for row in now_scored if row.confidence is not None],
                [row.correct for row in now_scored],
                alpha=alpha,
                min_samples=minimum,
                seed=settings.seed,
                permutations=permutations,
            )  # fmt: skip
        )
    ran = [r for r in results if r.skipped is None]
    return {
        "false_alarm_rate": settings.false_alarm_rate,
        "alpha_per_test": alpha,
        "tests_planned": planned,
        "reference": {
            "inputs": len(reference),
            "inputs_from": settings.reference or serving.trained_on,
            "answers": len(answers),
            "answers_from": settings.reference_on or "every evaluation of the serving model",
        },
        "current": {"inputs": len(current), "answers": len(answered), "labelled": len(labelled)},
        "permutations": permutations,
        "not_run": _not_run(
            reference, answers, labels_task, len(current), len(answered), len(now_scored), minimum
        ),
        "tests": [r.to_dict() for r in results],
        "drifted": [r.name for r in ran if r.drifted],
        "novel": novel,
    }


def _not_run(
    reference: Sequence[str], answers: Sequence[Any], labels_task: bool, n_current: int, n_answered: int,
    n_labelled: int, minimum: int,
) -> list[str]:  # fmt: skip
    """Why tests were left out, in words a person can act on."""
    out = []
    if not reference:
        out.append("input tests: no reference inputs (the serving model's training data is unknown)")
    elif n_current < minimum:
        out.append(f"input tests: {n_current} logged inputs in the window; {minimum} needed")
    if not answers:
        out.append("answer tests: the serving model has no stored evaluation to compare with")
    elif not labels_task:
        out.append("answer tests: the answers are free text, not labels")
    else:
        if n_answered < minimum:
            out.append(f"label and confidence tests: {n_answered} answers in the window; {minimum} needed")
        if n_labelled < minimum:
            out.append(f"calibration: {n_labelled} labelled answers in the window; {minimum} needed")
    return out
