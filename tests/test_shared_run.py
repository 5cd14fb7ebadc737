"""The shared whole-product run's collection rules (tests/support/product_run.py), without a run.

Its users must run side by side where the first of them was (so the run never runs behind other
tests), those marked ``ends_product_run`` after the others, and only the last user selected
stops it."""

from __future__ import annotations

import pytest

from tests.support import product_run


class Item:
    """What the hooks read of a collected test: its name, fixtures, markers and stash."""

    def __init__(self, name: str, *fixtures: str, ends: bool = False):
        self.name, self.fixturenames, self.ends, self.stash = name, fixtures, ends, pytest.Stash()

    def get_closest_marker(self, name: str):
        return object() if name == product_run.ENDS and self.ends else None

    def __repr__(self) -> str:
        return self.name


class Session:
    def __init__(self, items: list[Item]):
        self.items = items


def ordered(items: list[Item]) -> list[str]:
    product_run.pytest_collection_modifyitems(None, None, items)
    return [it.name for it in items]


def last_users(items: list[Item]) -> list[str]:
    product_run.pytest_collection_finish(Session(items))
    return [it.name for it in items if it.stash.get(product_run._LAST_USER, False)]


def test_users_run_side_by_side_where_the_first_was_and_the_ender_last():
    items = [Item("a"), Item("kill", "product_run", ends=True), Item("b", "broker"), Item("freeze", "product_run"),
             Item("c"), Item("watch", "tmp_path", "product_run"), Item("d")]
    assert ordered(items) == ["a", "freeze", "watch", "kill", "b", "c", "d"]
    assert last_users(items) == ["kill"]


def test_only_the_last_selected_user_stops_the_run():
    items = [Item("a"), Item("freeze", "product_run"), Item("watch", "product_run"), Item("b")]
    assert ordered(items) == ["a", "freeze", "watch", "b"]
    assert last_users(items) == ["watch"]


def test_without_users_nothing_moves_or_stops():
    items = [Item("a"), Item("b", "broker"), Item("c")]
    assert ordered(items) == ["a", "b", "c"] and last_users(items) == []
