"""One job per click: the same form sent twice by one browser within ``WINDOW_SECONDS`` is the same job.

Chosen over disabling Generate in the browser: a disabled button re-enables only when the server's answer arrives,
and two clicks a few milliseconds apart are both on their way before any answer; the server is the one place both
meet. The second one gets the first one's job id, so the page follows that job and nothing is queued twice. A
script that wants two jobs from one form simply sends them more than a second apart (or with different seeds);
``/generate`` for scripts is not guarded.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

WINDOW_SECONDS = 1.5
BROWSERS_REMEMBERED = 1024  # the oldest browsers' last submits are forgotten first


class RepeatGuard:
    def __init__(self, window_s: float = WINDOW_SECONDS, clock=time.monotonic):
        self.window_s = window_s
        self._clock = clock
        self._browsers: OrderedDict[str, _Browser] = OrderedDict()
        self._lock = threading.Lock()

    def submit_once(self, owner: str | None, form: str, submit: Callable[[], str],
                    still_active: Callable[[str], bool] = lambda job_id: True) -> str:
        """``submit()``'s job id, or the job this browser made from the same ``form`` (a stable text of the form's
        values) a moment ago while it is ``still_active`` (Generate, Cancel, Generate is two jobs). Submits of one
        browser run one at a time here: a double click's two events may run at once (the page's picture events run
        two abreast), and the second must see the first one's job."""
        if not owner:
            return submit()
        browser = self._browser(owner)
        with browser.lock:
            last = browser.last
            if (last is not None and last[0] == form and self._clock() - last[1] <= self.window_s
                    and still_active(last[2])):
                return last[2]
            job_id = submit()
            browser.last = (form, self._clock(), job_id)
            return job_id

    def _browser(self, owner: str) -> "_Browser":
        with self._lock:
            browser = self._browsers.pop(owner, None) or _Browser()
            self._browsers[owner] = browser
            while len(self._browsers) > BROWSERS_REMEMBERED:
                self._browsers.popitem(last=False)
            return browser


class _Browser:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.last: tuple[str, float, str] | None = None  # (form, when, job id) of its newest submit
