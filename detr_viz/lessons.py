"""Lessons: a teacher drives, the class follows. The state of a lesson, and where it is kept.

A lesson is small: a 4-letter code, the hashes of the teacher's and the co-teacher's secret keys,
the teacher's current choices (image, model, threshold, page, query, head, pixel, layer, what-if
settings: plain JSON values, never tensors), a version number that grows with every change, and the
question put to the class with its anonymous answers (one per student session). Every follower
reads the one shared trace of the teacher's image; the lesson only names it.

Two stores keep lessons, with one interface (`LessonStore`):
- `MemoryLessonStore`: in the app server's memory (the default: `streamlit run app.py` is all it takes);
- `RedisLessonStore`: in Redis (`DETR_VIZ_LESSON_STORE=redis://host:6379/0`), so that several app
  servers behind one address share their lessons.
Both bound the number of lessons, end a lesson after `LESSON_TTL_S` without a change, and let only
a holder of the teacher (or co-teacher) key change it.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from dataclasses import asdict, dataclass, field

CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ"      # no I or O: a code read aloud or off a projector
CODE_LENGTH = 4
LESSON_TTL_S = 3 * 3600                          # a lesson ends after 3 hours without a change
MAX_LESSONS = 50                                 # lessons one server (or one Redis) holds at once
MAX_CHOICES_BYTES = 4096                         # a lesson holds choices, not data
STORE_ENV = "DETR_VIZ_LESSON_STORE"


class LessonError(ValueError):
    """A lesson request that cannot be served; the message says what to do."""


@dataclass
class Question:
    """A check-yourself question put to the class: its id, text and options; the right option is
    stored only once it is revealed (followers never see it before)."""
    qid: str
    text: str
    options: list
    revealed: object = None                     # the right answer, once the teacher reveals it


@dataclass
class Lesson:
    code: str
    teacher_hash: str
    coteacher_hash: str
    created: float
    updated: float
    version: int = 0
    choices: dict = field(default_factory=dict)
    question: Question | None = None
    ended: bool = False

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Lesson:
        d = json.loads(text)
        q = d.pop("question", None)
        return cls(**d, question=Question(**q) if q else None)


@dataclass(frozen=True)
class NewLesson:
    """What starting a lesson gives the teacher: the code, and the two secret keys."""
    code: str
    teacher_key: str
    coteacher_key: str


def normalize_code(text) -> str:
    """The lesson code in `text` (spaces and case ignored); LessonError if it cannot be one."""
    code = "".join(str(text or "").split()).upper()
    if len(code) != CODE_LENGTH or any(c not in CODE_ALPHABET for c in code):
        shown = str(text)[:20]
        raise LessonError(f"'{shown}' is not a lesson code: a code is {CODE_LENGTH} letters, like 'KJPW'. "
                          "Check the code on the teacher's screen.")
    return code


def _hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _check_choices(choices: dict) -> dict:
    text = json.dumps(choices, sort_keys=True)          # raises TypeError on tensors, arrays, objects
    if len(text) > MAX_CHOICES_BYTES:
        raise LessonError(f"A lesson holds choices, not data: these take {len(text)} bytes "
                          f"(at most {MAX_CHOICES_BYTES}).")
    return json.loads(text)


class LessonStore:
    """The rules of lessons, on top of a storage back end (`_load`, `_save`, `_delete`, `_codes`,
    `_add_answer`, `_answers`, `_clear_answers`)."""

    def __init__(self, ttl_s: float = LESSON_TTL_S, max_lessons: int = MAX_LESSONS, clock=time.time):
        self.ttl_s, self.max_lessons, self.clock = ttl_s, max_lessons, clock

    # -- teacher ----------------------------------------------------------------------------------
    def create(self, choices: dict | None = None) -> NewLesson:
        """Start a lesson; LessonError when the server already holds `max_lessons` live lessons."""
        self.expire()
        if len(self._codes()) >= self.max_lessons:
            raise LessonError(f"This server already runs {self.max_lessons} lessons, its limit. Ask a teacher "
                              "to end a finished lesson, or try again when one has ended.")
        now = self.clock()
        teacher, coteacher = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
        for _ in range(100):
            code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
            lesson = Lesson(code, _hash_key(teacher), _hash_key(coteacher), now, now,
                            choices=_check_choices(choices or {}))
            if self._save(lesson, new=True):
                return NewLesson(code, teacher, coteacher)
        raise LessonError("No free lesson code was found; try again.")   # pragma: no cover - 331,776 codes

    def update(self, code: str, key: str, **choices) -> Lesson:
        """The teacher's new choices (merged into the old ones); bumps the version."""
        lesson = self._driven(code, key)
        lesson.choices = _check_choices({**lesson.choices, **choices})
        return self._touch(lesson)

    def ask(self, code: str, key: str, question: Question) -> Lesson:
        """Put a question to the class; earlier answers are cleared."""
        lesson = self._driven(code, key)
        lesson.question = Question(question.qid, question.text, list(question.options))
        self._clear_answers(lesson.code)
        return self._touch(lesson)

    def reveal(self, code: str, key: str, answer) -> Lesson:
        lesson = self._driven(code, key)
        if lesson.question is None:
            raise LessonError("No question is open: ask one first.")
        lesson.question.revealed = answer
        return self._touch(lesson)

    def end(self, code: str, key: str) -> None:
        lesson = self._driven(code, key)
        self._delete(lesson.code)

    def is_teacher(self, code: str, key: str | None) -> bool:
        try:
            self._driven(code, key)
            return True
        except LessonError:
            return False

    # -- everybody --------------------------------------------------------------------------------
    def get(self, code: str) -> Lesson:
        """The live lesson with this code; LessonError if it does not exist or has ended."""
        code = normalize_code(code)
        lesson = self._load(code)
        if lesson is None or self._expired(lesson):
            if lesson is not None:
                self._delete(code)
            raise LessonError(f"There is no lesson {code} on this server (it may have ended). "
                              "Check the code, or ask the teacher for the link.")
        return lesson

    def answer(self, code: str, session_id: str, qid: str, option) -> bool:
        """A student's answer to the open question; False if this session has answered it already.
        Anonymous: only the session id (a random token of the browser session) is kept, no name."""
        lesson = self.get(code)
        q = lesson.question
        if q is None or q.qid != qid:
            raise LessonError("This question is no longer open: the teacher has moved on.")
        if option not in q.options:
            raise LessonError(f"'{option}' is not one of the options.")
        return self._add_answer(lesson.code, str(session_id), json.dumps(option))

    def counts(self, code: str) -> dict:
        """option -> number of answers to the open question (every option listed, zeros included)."""
        lesson = self.get(code)
        if lesson.question is None:
            return {}
        tally = {json.dumps(o): 0 for o in lesson.question.options}
        for given in self._answers(lesson.code):
            if given in tally:
                tally[given] += 1
        return {json.loads(k): v for k, v in tally.items()}

    def expire(self) -> int:
        """Delete lessons idle for longer than the TTL; returns how many went."""
        gone = 0
        for code in self._codes():
            lesson = self._load(code)
            if lesson is None or self._expired(lesson):
                self._delete(code)
                gone += 1
        return gone

    def __len__(self) -> int:
        self.expire()
        return len(self._codes())

    # -- helpers ----------------------------------------------------------------------------------
    def _expired(self, lesson: Lesson) -> bool:
        return self.clock() - lesson.updated > self.ttl_s

    def _driven(self, code: str, key: str | None) -> Lesson:
        lesson = self.get(code)
        given = _hash_key(key or "")
        if not (hmac.compare_digest(given, lesson.teacher_hash) or hmac.compare_digest(given, lesson.coteacher_hash)):
            raise LessonError("Only the teacher's screen can change this lesson. Use 'Explore on my own' to "
                              "click freely.")
        return lesson

    def _touch(self, lesson: Lesson) -> Lesson:
        lesson.version += 1
        lesson.updated = self.clock()
        self._save(lesson)
        return lesson

    # -- storage back end (overridden) ------------------------------------------------------------
    def _load(self, code: str) -> Lesson | None: raise NotImplementedError
    def _save(self, lesson: Lesson, new: bool = False) -> bool: raise NotImplementedError
    def _delete(self, code: str) -> None: raise NotImplementedError
    def _codes(self) -> list[str]: raise NotImplementedError
    def _add_answer(self, code: str, session_id: str, option: str) -> bool: raise NotImplementedError
    def _answers(self, code: str) -> list[str]: raise NotImplementedError
    def _clear_answers(self, code: str) -> None: raise NotImplementedError


class MemoryLessonStore(LessonStore):
    """Lessons in this process's memory (one app server). Thread-safe: sessions run in threads."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self._lessons: dict[str, str] = {}                 # code -> Lesson JSON (a copy, never shared)
        self._given: dict[str, dict[str, str]] = {}        # code -> session -> answer
        self._lock = threading.Lock()

    def _load(self, code):
        with self._lock:
            text = self._lessons.get(code)
        return Lesson.from_json(text) if text else None

    def _save(self, lesson, new=False):
        with self._lock:
            if new and lesson.code in self._lessons:
                return False
            if not new and lesson.code not in self._lessons:
                raise LessonError(f"The lesson {lesson.code} has ended.")
            self._lessons[lesson.code] = lesson.to_json()
            return True

    def _delete(self, code):
        with self._lock:
            self._lessons.pop(code, None)
            self._given.pop(code, None)

    def _codes(self):
        with self._lock:
            return list(self._lessons)

    def _add_answer(self, code, session_id, option):
        with self._lock:
            given = self._given.setdefault(code, {})
            if session_id in given:
                return False
            given[session_id] = option
            return True

    def _answers(self, code):
        with self._lock:
            return list(self._given.get(code, {}).values())

    def _clear_answers(self, code):
        with self._lock:
            self._given.pop(code, None)


class RedisLessonStore(LessonStore):
    """Lessons in Redis, shared by several app servers. Each lesson is one JSON string with a Redis
    expiry of the TTL (renewed on every change); answers are a hash per lesson (HSETNX: one per
    session); a set lists the live codes for the bound."""

    PREFIX = "detr_viz:lesson:"

    def __init__(self, url: str, **kw):
        super().__init__(**kw)
        import redis  # the client library, imported only when used
        self.url = url
        self.r = redis.Redis.from_url(url, decode_responses=True, socket_timeout=5)

    def _key(self, code):
        return self.PREFIX + code

    def _load(self, code):
        text = self.r.get(self._key(code))
        return Lesson.from_json(text) if text else None

    def _save(self, lesson, new=False):
        ttl = max(1, int(self.ttl_s))
        if new:
            if not self.r.set(self._key(lesson.code), lesson.to_json(), ex=ttl, nx=True):
                return False
            self.r.sadd(self.PREFIX + "codes", lesson.code)
            return True
        if not self.r.set(self._key(lesson.code), lesson.to_json(), ex=ttl, xx=True):
            raise LessonError(f"The lesson {lesson.code} has ended.")
        self.r.expire(self._key(lesson.code) + ":answers", ttl)
        return True

    def _delete(self, code):
        self.r.delete(self._key(code), self._key(code) + ":answers")
        self.r.srem(self.PREFIX + "codes", code)

    def _codes(self):
        codes = sorted(self.r.smembers(self.PREFIX + "codes"))
        for code in codes:                                  # Redis expired the lesson: drop its code too
            if not self.r.exists(self._key(code)):
                self._delete(code)
        return [c for c in codes if self.r.exists(self._key(c))]

    def _add_answer(self, code, session_id, option):
        key = self._key(code) + ":answers"
        added = bool(self.r.hsetnx(key, session_id, option))
        self.r.expire(key, max(1, int(self.ttl_s)))
        return added

    def _answers(self, code):
        return list(self.r.hvals(self._key(code) + ":answers"))

    def _clear_answers(self, code):
        self.r.delete(self._key(code) + ":answers")


def lesson_store_from_env(env: dict | None = None) -> LessonStore:
    """The store `DETR_VIZ_LESSON_STORE` names: unset or "memory" = this server's memory;
    "redis://host:port/db" = Redis."""
    url = (env if env is not None else os.environ).get(STORE_ENV, "").strip()
    if not url or url == "memory":
        return MemoryLessonStore()
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisLessonStore(url)
    raise LessonError(f"{STORE_ENV}={url!r} is not a lesson store: use 'memory' or a redis:// URL.")
