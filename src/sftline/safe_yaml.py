"""Reading the YAML people write (sftline.yaml, settings files), with the faults of plain
`yaml.safe_load` closed: a key given twice is an error naming it and both lines (safe_load keeps
the last one silently), and aliases cannot expand the document past `MAX_EXPANDED_NODES` (an
"alias bomb" of a few lines otherwise expands to billions of values when validated or hashed).

Every problem is a `yaml.YAMLError` with a line, so callers report it as any YAML error.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, SequenceNode

MAX_EXPANDED_NODES = 100_000
"""Values a document may hold once every alias is expanded. A sftline.yaml has a few hundred and a
contract's JSON schema a few thousand; a bomb of ten aliases of ten already has 10**10."""

MERGE_TAG = "tag:yaml.org,2002:merge"


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader whose mappings refuse a key given twice (`<<` merges may still be overridden)."""

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        first_line: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == MERGE_TAG:
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                seen = first_line.get(key)
            except TypeError:  # an unhashable key: the base class reports it
                continue
            if seen is not None:
                raise ConstructorError(
                    "while reading a mapping",
                    node.start_mark,
                    f"duplicate key {str(key)[:80]!r}, first given on line {seen + 1}",
                    key_node.start_mark,
                )
            first_line[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str) -> Any:
    """The document in `text` (None when it is empty), read as `yaml.safe_load` reads it, but with
    duplicate keys and runaway aliases refused as `yaml.YAMLError`s."""
    loader = _StrictLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node)
        return loader.construct_document(node)
    except RecursionError:
        raise yaml.YAMLError("the document is nested too deeply to read") from None
    finally:
        loader.dispose()  # type: ignore[no-untyped-call]


def _check_expansion(root: Node) -> None:
    """Refuse a node graph (aliases are shared nodes) that expands past MAX_EXPANDED_NODES or
    holds itself. Each distinct node is sized once, so a bomb is caught at the cost of its text."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(node: Node) -> int:
        known = sizes.get(id(node))
        if known is not None:
            return known
        if id(node) in open_nodes:
            raise yaml.MarkedYAMLError(
                problem="an alias refers to a value that holds it (a recursive alias)",
                problem_mark=node.start_mark,
            )
        open_nodes.add(id(node))
        total = 1
        if isinstance(node, SequenceNode):
            total += sum(size(child) for child in node.value)
        elif isinstance(node, MappingNode):
            total += sum(size(key) + size(value) for key, value in node.value)
        open_nodes.discard(id(node))
        if total > MAX_EXPANDED_NODES:
            raise yaml.MarkedYAMLError(
                problem=f"aliases expand this value to more than {MAX_EXPANDED_NODES:,} values",
                problem_mark=node.start_mark,
            )
        sizes[id(node)] = total
        return total

    size(root)
