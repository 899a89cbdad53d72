"""The token-key rotation's waiting around the command: until enough answers, within bounds."""

from __future__ import annotations

import base64

from harness.load import LoadCall
from harness.probes import rotation
from harness.probes.rotation import AnswerCount


class FakeTime:
    """A clock that sleeps instantly; each sleep may let the load answer some calls."""

    def __init__(self, answers_per_s: float, counter: list[AnswerCount]) -> None:
        self.now = 0.0
        self.rate = answers_per_s
        self.counter = counter
        self.owed = 0.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.owed += seconds * self.rate
        while self.owed >= 1:
            self.owed -= 1
            self.counter[0](0, 0)


def waited(answers_per_s: float, answers: int, least_s: float, most_s: float) -> tuple[float, int]:
    holder: list[AnswerCount] = []
    fake = FakeTime(answers_per_s, holder)
    count = AnswerCount(lambda worker, iteration: LoadCall("sync", True, 200, ""), clock=fake.clock,
                        sleep=fake.sleep)
    holder.append(count)
    return count.wait_for(answers, least_s, most_s), count.answered


def test_a_fast_load_ends_the_baseline_at_its_lower_bound() -> None:
    # 400 answers a second: 200 answers after 0.5 s, but the baseline lasts at least 1 s
    seconds, answered = waited(400, rotation.BASELINE_ANSWERS, *rotation.BASELINE_S)
    assert abs(seconds - rotation.BASELINE_S[0]) < 0.06 and answered >= rotation.BASELINE_ANSWERS


def test_a_moderate_load_ends_once_enough_answers_came() -> None:
    # 100 answers a second: 200 answers take 2 s (was a fixed 3 s)
    seconds, answered = waited(100, rotation.BASELINE_ANSWERS, *rotation.BASELINE_S)
    assert 1.95 <= seconds <= 2.06 and answered >= rotation.BASELINE_ANSWERS


def test_a_slow_load_is_cut_at_the_upper_bound() -> None:
    # 20 answers a second never reach 200: the wait ends at 3 s with what came
    seconds, answered = waited(20, rotation.BASELINE_ANSWERS, *rotation.BASELINE_S)
    assert abs(seconds - rotation.BASELINE_S[1]) < 1e-9 and answered == 60


def test_a_stalled_service_does_not_hold_the_tail() -> None:
    seconds, answered = waited(0, rotation.TAIL_ANSWERS, *rotation.TAIL_S)
    assert abs(seconds - rotation.TAIL_S[1]) < 1e-9 and answered == 0


def test_only_answers_after_the_wait_began_count() -> None:
    holder: list[AnswerCount] = []
    fake = FakeTime(100, holder)
    count = AnswerCount(lambda worker, iteration: LoadCall("sync", True, 200, ""), clock=fake.clock,
                        sleep=fake.sleep)
    holder.append(count)
    for _ in range(500):  # answers before the tail began
        count(0, 0)
    seconds = count.wait_for(50, 0.2, 2.0)
    assert 0.45 <= seconds <= 0.56


def test_a_new_key_in_a_commands_output_never_reaches_the_timeline_even_in_part() -> None:
    from harness.probes.rotation import timeline_words

    # Given an output line printing the key the rotation just made (not a known secret yet),
    # where a plain cut at 120 characters would keep its first part
    key = base64.urlsafe_b64encode(bytes(range(32))).decode()
    line = '{"command": "rotate-token-key", "note": "' + "x " * 20 + '", "new_key": "' + key + '"}'
    shown = timeline_words(line)
    # Then no run of its characters longer than a word is shown
    assert len(shown) <= 120 and key[:12] not in shown
    assert timeline_words('{"command": "rotate-token-key", "rows": 3}') == '{"command": "rotate-token-key", "rows": 3}'
