"""The lesson store: codes, the teacher key, one answer per session, expiry, bounds; in memory and in
a real redis-server (Debian's package, started here on a free loopback port)."""
import shutil
import subprocess
import time

import pytest
from browser_support import free_port

from detr_viz.lessons import (
    CODE_ALPHABET,
    LessonError,
    MemoryLessonStore,
    Question,
    RedisLessonStore,
    lesson_store_from_env,
    normalize_code,
)

REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture(scope="module")
def redis_url():
    if not shutil.which("redis-server") and not shutil.os.path.exists(REDIS):
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    proc = subprocess.Popen([REDIS, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import redis
    client = redis.Redis(port=port)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail("redis-server did not start")
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(10)


@pytest.fixture(params=["memory", "redis"])
def make_store(request):
    """A factory of stores of one kind; for Redis, each call is another "app server" on one Redis."""
    if request.param == "memory":
        shared = {}

        def make(**kw):
            if "store" not in shared:
                shared["store"] = MemoryLessonStore(**kw)
            return shared["store"]
        return make
    url = request.getfixturevalue("redis_url")
    import redis
    redis.Redis.from_url(url).flushdb()
    return lambda **kw: RedisLessonStore(url, **kw)


def test_codes_are_four_letters_and_normalised():
    assert normalize_code(" kj pw ") == "KJPW"
    for bad in ["", "KJP", "KJPWX", "KJ0W", "KJIW", "../a", "x" * 10_000, None]:
        with pytest.raises(LessonError, match="not a lesson code"):
            normalize_code(bad)


def test_teacher_drives_and_follower_reads(make_store):
    store = make_store()
    new = store.create({"page": 1})
    assert len(new.code) == 4 and set(new.code) <= set(CODE_ALPHABET)
    assert new.teacher_key != new.coteacher_key
    v0 = store.get(new.code).version
    lesson = store.update(new.code, new.teacher_key, page=4, query=7, head=3)
    assert lesson.version == v0 + 1
    follower = make_store()                                   # another app server, for Redis
    seen = follower.get(new.code.lower())
    assert seen.choices == {"page": 4, "query": 7, "head": 3}
    assert seen.version == v0 + 1
    store.update(new.code, new.coteacher_key, threshold=0.7)   # the co-teacher link drives too
    assert follower.get(new.code).choices["threshold"] == 0.7


def test_a_student_cannot_drive(make_store):
    store = make_store()
    new = store.create()
    for key in [None, "", "guess", new.code, new.teacher_key + "x"]:
        with pytest.raises(LessonError, match="Only the teacher"):
            store.update(new.code, key, page=2)
        assert not store.is_teacher(new.code, key)
    assert store.is_teacher(new.code, new.teacher_key)
    assert store.get(new.code).choices == {}


def test_unknown_and_ended_lessons(make_store):
    store = make_store()
    with pytest.raises(LessonError, match="no lesson"):
        store.get("ABCD")
    new = store.create()
    with pytest.raises(LessonError, match="Only the teacher"):
        store.end(new.code, "not the key")
    store.end(new.code, new.teacher_key)
    with pytest.raises(LessonError, match="no lesson"):
        store.get(new.code)


def test_one_answer_per_session_and_counts(make_store):
    store = make_store()
    new = store.create()
    q = Question("res5-channels", "How many channels?", [2048, 256, 8, 264])
    store.ask(new.code, new.teacher_key, q)
    assert store.counts(new.code) == {2048: 0, 256: 0, 8: 0, 264: 0}
    assert store.answer(new.code, "s1", q.qid, 256)
    assert not store.answer(new.code, "s1", q.qid, 2048)       # a second answer is not counted
    assert store.answer(new.code, "s2", q.qid, 2048)
    assert store.answer(new.code, "s3", q.qid, 256)
    assert store.counts(new.code) == {2048: 1, 256: 2, 8: 0, 264: 0}
    with pytest.raises(LessonError, match="not one of the options"):
        store.answer(new.code, "s4", q.qid, 7)
    with pytest.raises(LessonError, match="no longer open"):
        store.answer(new.code, "s4", "another-question", 256)
    assert store.get(new.code).question.revealed is None        # followers do not see the answer early
    store.reveal(new.code, new.teacher_key, 256)
    assert store.get(new.code).question.revealed == 256
    store.ask(new.code, new.teacher_key, Question("q2", "Next?", ["a", "b"]))   # a new question: no old answers
    assert store.counts(new.code) == {"a": 0, "b": 0}


def test_expiry_after_ttl_without_change():
    clock = Clock()
    store = MemoryLessonStore(ttl_s=3 * 3600, clock=clock)
    new = store.create()
    clock.now += 2 * 3600
    store.update(new.code, new.teacher_key, page=3)            # a change renews the lesson
    clock.now += 2 * 3600
    assert store.get(new.code).choices == {"page": 3}
    clock.now += 3600 + 1
    with pytest.raises(LessonError, match="no lesson"):
        store.get(new.code)
    assert len(store) == 0


def test_redis_expires_lessons(redis_url):
    store = RedisLessonStore(redis_url, ttl_s=1)
    new = store.create()
    time.sleep(2.2)
    with pytest.raises(LessonError, match="no lesson"):
        store.get(new.code)
    assert new.code not in store._codes()


def test_the_number_of_lessons_is_bounded(make_store):
    store = make_store(max_lessons=3)
    made = [store.create() for _ in range(3)]
    with pytest.raises(LessonError, match="limit"):
        store.create()
    store.end(made[0].code, made[0].teacher_key)
    store.create()                                            # room again once one has ended
    assert len(store) == 3


def test_lessons_hold_choices_not_data(make_store):
    store = make_store()
    new = store.create()
    with pytest.raises(LessonError, match="choices, not data"):
        store.update(new.code, new.teacher_key, blob="x" * 10_000)
    with pytest.raises(TypeError):
        store.update(new.code, new.teacher_key, tensor=object())


def test_store_from_env(redis_url):
    assert isinstance(lesson_store_from_env({}), MemoryLessonStore)
    assert isinstance(lesson_store_from_env({"DETR_VIZ_LESSON_STORE": redis_url}), RedisLessonStore)
    with pytest.raises(LessonError, match="not a lesson store"):
        lesson_store_from_env({"DETR_VIZ_LESSON_STORE": "postgres://x"})
