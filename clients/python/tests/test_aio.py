"""camhub.aio with the test writer (tests/ringwriter.py): many rings awaited in one
loop share one waiter thread; timeouts, replay order, cancellation, select. The real
hub with 8 cameras is tests/test_examples.py (examples/async_many.py)."""

import asyncio
import threading
import time

import camhub
import pytest
from camhub import aio
from ringwriter import value_of


def aio_threads():
    return [t for t in threading.enumerate() if t.name == "camhub-aio"]


def test_many_rings_share_one_waiter_thread(make, shm):
    names = [f"c{i}" for i in range(8)]
    writers = [make(n) for n in names]
    for w in writers:
        w.configure("gray", 16, 8)

    async def main():
        rings = [await aio.open(n, "out", directory=shm, timeout=0) for n in names]
        tasks = [asyncio.create_task(aio.wait(r, timeout=10)) for r in rings]
        await asyncio.sleep(0.2)
        threads = aio_threads()
        assert len(threads) == 1, f"one waiter thread for 8 awaited rings, not {len(threads)}"
        assert not any(t.done() for t in tasks), "nothing published yet"
        for w in reversed(writers):
            threading.Timer(0.05, w.publish).start()
        frames = await asyncio.gather(*tasks)
        assert [f.seq for f in frames] == [1] * 8 and all((f.array == value_of(1)).all() for f in frames)
        for r in rings:
            r.close()
        return threads[0]

    thread = asyncio.run(main())
    thread.join(5)
    assert not thread.is_alive(), "the waiter thread ends once nothing is awaited"


def test_timeouts_mean_what_they_mean_everywhere(make, shm):
    w = make()
    w.configure("gray", 16, 8)

    async def main():
        with pytest.raises(FileNotFoundError):
            await aio.open("nocam", "out", directory=shm, timeout=0)
        t = time.monotonic()
        with pytest.raises(FileNotFoundError):
            await aio.open("nocam", "out", directory=shm, timeout=0.2)
        assert time.monotonic() - t >= 0.2
        ring = await aio.open("cam", "out", directory=shm, timeout=0)
        assert await aio.wait(ring, 0) is None
        t = time.monotonic()
        assert await aio.wait(ring, 0.2) is None
        assert time.monotonic() - t >= 0.2
        w.publish()
        f = await aio.wait(ring, 0)
        assert f is not None and f.seq == 1
        threading.Timer(0.2, w.publish).start()
        f = await aio.wait(ring)  # None: until a frame comes
        assert f.seq == 2
        ring.close()

    asyncio.run(main())


def test_open_waits_for_the_ring_file(make, shm):
    async def main():
        threading.Timer(0.2, make, ("late",)).start()
        ring = await aio.open("late", "out", directory=shm)
        assert ring.readers == 1
        ring.close()

    asyncio.run(main())


def test_frames_in_replay_come_in_order_and_end(make, shm):
    w = make(mode=1)
    w.configure("gray", 16, 8, slots=2)

    def write():
        for _ in range(30):
            w.publish()
        w.end()

    async def main():
        got = []
        writer = threading.Thread(target=write)
        agen = aio.frames("cam", "out", directory=shm, timeout=10)
        first = await agen.__anext__()  # attached: the writer may start
        writer.start()
        got.append((first.seq, int(first.array[0, 0])))
        async for f in agen:
            got.append((f.seq, int(f.array[0, 0])))
            if f.seq % 10 == 0:
                await asyncio.sleep(0.05)  # a slow reader: the writer waits for it
        return got

    threading.Timer(0.1, w.publish).start()
    got = asyncio.run(main())
    assert got == [(n, value_of(n)) for n in range(1, 32)], got


def test_a_cancelled_wait_leaves_nothing_behind(make, shm):
    w = make()
    w.configure("gray", 16, 8)

    async def main():
        ring = await aio.open("cam", "out", directory=shm, timeout=0)
        task = asyncio.create_task(aio.wait(ring))
        await asyncio.sleep(0)
        waiter = aio._waiters[asyncio.get_running_loop()]
        assert len(waiter._entries) == 1, "the task waits on the ring's word"
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert waiter._entries == []
        w.publish()
        assert (await aio.wait(ring, 5)).seq == 1, "the ring still works"
        ring.close()

    asyncio.run(main())


def test_select_in_a_loop(make, shm):
    wa, wb = make("a"), make("b")
    wa.configure("gray", 16, 8)
    wb.configure("gray", 16, 8)

    async def main():
        a = await aio.open("a", "out", directory=shm, timeout=0)
        b = await aio.open("b", "out", directory=shm, timeout=0)
        assert await aio.select([a, b], timeout=0) == []
        threading.Timer(0.1, wb.publish).start()
        assert await aio.select([a, b], timeout=10) == [b]
        assert b.wait(0).seq == 1
        assert await aio.select([a, b], timeout=0.1) == []
        a.close()
        b.close()

    asyncio.run(main())


def test_a_sync_select_and_aio_agree_on_the_same_ring(make, shm):
    """A frame returned by aio is returned: camhub.select no longer reports it."""
    w = make()
    w.configure("gray", 16, 8)
    w.publish()

    async def main(ring):
        return await aio.wait(ring, 1)

    ring = camhub.open("cam", "out", directory=shm, timeout=0)
    assert camhub.select([ring], timeout=0) == []  # attached after frame 1
    w.publish()
    assert camhub.select([ring], timeout=0) == [ring]
    assert asyncio.run(main(ring)).seq == 2
    assert camhub.select([ring], timeout=0) == []
    ring.close()
