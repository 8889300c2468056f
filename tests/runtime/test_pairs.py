"""Which (method, status) pairs get a series of their own: the supervisor's plan, as pure data."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from asgiscale.runtime.pairs import Plan, Worker, plan


def test_a_lone_worker_may_name_as_many_new_pairs_as_its_slot_holds() -> None:
    assert plan(frozenset(), room=255, own=31, workers=[Worker(frozenset(), 0)]) == Plan([], [31])


def test_named_pairs_get_their_retired_series_once_and_the_allowances_are_topped_up() -> None:
    workers = [Worker(frozenset({1, 2, 3}), 4), Worker(frozenset({3, 4}), 4)]
    decided = plan(frozenset({1}), room=10, own=6, workers=workers)
    assert decided.register == [2, 3, 4]
    # 6 unclaimed retired series, 3 spare already: the first worker had 1 spare and gets 2 more, the second had 2
    # and gets the last one.
    assert decided.allowed == [3 + 1 + 2, 2 + 2 + 1]


def test_the_unclaimed_series_are_shared_evenly_and_never_promised_twice() -> None:
    workers = [Worker(frozenset(), 0) for _ in range(20)]
    decided = plan(frozenset(range(1, 56)), room=255, own=31, workers=workers)
    assert decided.allowed == [10] * 20  # 200 unclaimed series for 20 workers


def test_allowances_are_never_lowered_and_stop_growing_once_every_series_is_claimed() -> None:
    # 7 retired series claimed, 3 promised to the first worker: none left for the second.
    workers = [Worker(frozenset({1, 2}), 5), Worker(frozenset(), 0)]
    assert plan(frozenset(range(1, 8)), room=10, own=31, workers=workers).allowed == [5, 0]
    # A worker that named more pairs than its allowance (ones the retired slot had) keeps its allowance as it was.
    assert plan(frozenset(range(1, 11)), room=10, own=31, workers=[Worker(frozenset({1, 2, 3}), 1)]).allowed == [1]


def test_pairs_beyond_the_room_are_not_registered() -> None:
    # Only if a worker named more than it was allowed; the plan still never exceeds the room.
    decided = plan(frozenset({1}), room=3, own=31, workers=[Worker(frozenset({5, 6, 7}), 3)])
    assert decided.register == [5, 6]
    assert decided.allowed == [3]


# One step of a random life: a worker names a pair (or tries to), the supervisor shares the pairs out, or a worker
# dies and a new one takes its slot.
name = st.tuples(st.just("name"), st.integers(0, 3), st.integers(1, 60))
steps = st.lists(
    st.one_of(
        name,
        name,
        name,
        st.tuples(st.just("share"), st.just(0), st.just(0)),
        st.tuples(st.just("die"), st.integers(0, 3), st.just(0)),
    ),
    max_size=400,
)


@given(steps)
def test_every_pair_a_worker_named_finds_its_retired_series_when_the_worker_dies(
    life: list[tuple[str, int, int]],
) -> None:
    room, own = 20, 6
    registered: set[int] = set()
    named: list[list[int]] = [[] for _ in range(4)]
    allowed = [0] * len(named)

    def share() -> list[int]:
        """The supervisor's step (metrics.share_pairs): register what was named, top the allowances up."""
        workers = [Worker(frozenset(keys), a) for keys, a in zip(named, allowed, strict=True)]
        decided = plan(frozenset(registered), room=room, own=own, workers=workers)
        assert all(new >= old for new, old in zip(decided.allowed, allowed, strict=True)), "an allowance was lowered"
        registered.update(decided.register)
        # Every retired series is claimed, or may still be claimed by a live worker without asking: never more.
        spare = sum(max(min(a, own) - len(keys), 0) for keys, a in zip(named, decided.allowed, strict=True))
        assert len(registered.union(*named)) + spare <= room, "more retired series promised than there are"
        return decided.allowed

    allowed = share()
    for action, index, key in life:
        if action == "name":
            # The worker's rule (metrics.Recorder.place): its own series left, and the pair already registered or
            # within its allowance; otherwise the pair goes to its overflow series.
            keys = named[index]
            if key not in keys and len(keys) < own and (key in registered or len(keys) < allowed[index]):
                keys.append(key)
        elif action == "share":
            allowed = share()
        else:
            # The fold (metrics.fold): every pair the worker named keeps a series of its own.
            registered.update(named[index])
            assert len(registered) <= room, "a named pair found no retired series"
            # A new worker takes the slot, with an allowance from a plan made before it is forked.
            named[index], allowed[index] = [], 0
            allowed = share()
