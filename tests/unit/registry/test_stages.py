"""The rollback target from a history: repeated rollbacks walk back through the promotions."""

from __future__ import annotations

import pytest

from sftline.registry.stages import Change, check_target_stage, rollback_target


def promoted(version: int) -> Change:
    return Change(version, "promote", "production")


def rolled_back(version: int, to: str) -> Change:
    return Change(version, "rollback", to)


def test_each_rollback_steps_one_promotion_further_back() -> None:
    history = [Change(1, "register", "candidate"), promoted(1), promoted(2), promoted(3)]
    assert rollback_target(history, 3) == 2
    history += [rolled_back(3, "candidate"), rolled_back(2, "production")]
    assert rollback_target(history, 2) == 1
    history += [rolled_back(2, "candidate"), rolled_back(1, "production")]
    assert rollback_target(history, 1) is None


def test_a_version_promoted_again_is_rolled_back_to_the_one_before_its_latest_promotion() -> None:
    history = [promoted(1), promoted(2), promoted(1)]
    assert rollback_target(history, 1) == 2
    assert rollback_target([promoted(1), promoted(1)], 1) is None


def test_canary_promotions_do_not_count_and_nothing_in_production_means_the_last_promoted() -> None:
    history = [promoted(1), Change(2, "promote", "canary"), promoted(3)]
    assert rollback_target(history, 3) == 1
    assert rollback_target(history + [Change(3, "promote", "archived")], None) == 3
    assert rollback_target([], None) is None


def test_unknown_stage_is_refused() -> None:
    assert check_target_stage("canary") == "canary"
    with pytest.raises(ValueError, match="unknown stage 'staging'"):
        check_target_stage("staging")


def test_a_version_rolled_back_as_bad_is_never_put_back() -> None:
    history = [promoted(1), promoted(2), promoted(3)]
    history += [rolled_back(3, "candidate"), rolled_back(2, "production")]
    history += [Change(2, "demote", "archived"), promoted(4)]
    assert rollback_target(history, 4) == 2  # not 3, which was rolled back
    history += [rolled_back(4, "candidate"), rolled_back(2, "production")]
    assert rollback_target(history, 2) == 1
