"""A tab's settings check that finishes after a newer one of the same tab is dropped (the verdict never goes back to
stale values); other tabs and callers without a tab are never dropped."""
from __future__ import annotations

from i2v.web.newest import NewestWins


def test_an_older_check_finishing_last_is_dropped_but_the_newest_shows():
    newest = NewestWins()
    model_change = newest.begin("tab-a")
    typed_value = newest.begin("tab-a")
    assert newest.is_newest("tab-a", typed_value)  # the newer check finished first: shown
    assert not newest.is_newest("tab-a", model_change)  # the older one finished later: dropped


def test_tabs_do_not_drop_each_others_checks():
    newest = NewestWins()
    mine = newest.begin("tab-a")
    newest.begin("tab-b")
    assert newest.is_newest("tab-a", mine)
    assert newest.is_newest(None, newest.begin(None))


def test_a_forgotten_tab_is_shown_rather_than_dropped():
    newest = NewestWins(remembered=2)
    first = newest.begin("tab-a")
    newest.begin("tab-b")
    newest.begin("tab-c")  # tab-a is forgotten
    assert newest.is_newest("tab-a", first)
