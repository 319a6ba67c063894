"""The web page's job queue (composer.jobs): requests checked up front, one worker running jobs in order,
results the page can show, bounded memory. Plain library code: no web server and no web extra needed."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import pytest

import composer
from composer import ComposerError, jobs, plugins
from composer.plugins import get_registry
from composer.session import Session


def wait(queue: jobs.JobQueue, job: jobs.Job, timeout: float = 60) -> dict:
    deadline = time.time() + timeout
    while job.state not in ("done", "failed"):
        assert time.time() < deadline, f"job {job.id} still {job.state}"
        time.sleep(0.02)
    return queue.status(job)


@pytest.fixture
def queue():
    q = jobs.JobQueue(device="cpu")
    yield q
    q.close()


@pytest.fixture
def held(monkeypatch):
    """Generation waits until the test sets the event: jobs stay running and queued as long as it needs."""
    release = threading.Event()
    generate = Session.generate

    def waiting(self, *args, **kwargs):
        assert release.wait(30)
        return generate(self, *args, **kwargs)

    monkeypatch.setattr(Session, "generate", waiting)
    yield release
    release.set()


def test_the_progress_callback_counts_steps_and_changes_nothing():
    bach = composer.load("bach", device="cpu")
    seen = []
    watched = bach.generate(n=2, seed=5, length=1, progress=lambda step, most: seen.append((step, most)))
    plain = bach.generate(n=2, seed=5, length=1)
    assert [g.tokens for g in watched.sequences] == [g.tokens for g in plain.sequences]
    assert [step for step, _ in seen] == list(range(1, len(seen) + 1)) and len(seen) > 10
    assert {most for _, most in seen} == {bach.plan(1).max_tokens}


def test_a_chorale_job_gives_notes_audio_and_files_written_when_asked(queue):
    job = queue.submit({"style": "bach", "length": 1, "seed": 1})
    status = wait(queue, job)
    same = composer.load("bach", device="cpu").generate(seed=1, length=1)  # the page makes what the library makes
    assert [g.tokens for g in job.pieces.sequences] == [g.tokens for g in same.sequences]
    assert status["state"] == "done" and status["steps"] > 0 and status["max_steps"] >= status["steps"]
    (piece,) = status["pieces"]
    assert piece["name"] == "bach-1-1" and piece["summary"].startswith("4 parts")
    assert piece["notes"]["voices"] == ["Soprano", "Alto", "Tenor", "Bass"]
    assert all(0 <= start < end <= piece["notes"]["end"] for _, start, end, _ in piece["notes"]["notes"])
    assert {f["format"] for f in piece["files"]} >= {"mid", "musicxml", "wav"}
    audio = queue.file(job, Path(piece["audio"]).name)
    assert audio.read_bytes()[:4] == b"RIFF" and audio.read_bytes()[8:12] == b"WAVE"
    score = job.folder / "bach-1-1.musicxml"
    assert not score.exists()  # formats beyond the encoder's defaults are written when first asked for
    assert queue.file(job, "bach-1-1.musicxml") == score and b"<score-partwise" in score.read_bytes()
    with pytest.raises(jobs.NoSuchJob, match="has no file"):
        queue.file(job, "../../etc/passwd")


def test_a_look_inside_a_generated_piece_lists_correlated_cells_and_draws_them(queue):
    job = queue.submit({"style": "irish", "seed": 3, "length": 200})
    wait(queue, job)
    found = queue.inspect(job, 0)
    assert found["steps"] == len(job.pieces.sequences[0].tokens) and found["layers"]
    assert "inside quotes" in found["top"] or "time in bar" in found["top"]
    assert all(-1 <= cell["r"] <= 1 for cells in found["top"].values() for cell in cells)
    picture = queue.file(job, Path(found["image"]).name)
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert queue.inspect(job, 0) is found  # made once
    with pytest.raises(jobs.NoSuchJob, match="no piece 2"):
        queue.inspect(job, 1)


def test_a_drawing_job_shows_svgs_and_a_tune_has_notes_where_it_parses(queue):
    drawings = wait(queue, queue.submit({"style": "hershey", "n": 2, "seed": 1, "label": "a"}))
    for piece in drawings["pieces"]:
        assert piece["image"].endswith(".svg") and "notes" not in piece and "audio" not in piece
        assert "label 'a'" in piece["summary"]
    (whole,) = wait(queue, queue.submit({"style": "irish", "seed": 2, "length": 300}))["pieces"]
    assert whole["text"].startswith("X:") and whole["summary"].endswith(", parses")
    assert whole["notes"]["notes"] and whole["audio"].endswith(".wav")
    (cut,) = wait(queue, queue.submit({"style": "irish", "seed": 2, "length": 12}))["pieces"]  # a header, no notes
    assert cut["text"] and cut["summary"].endswith("does not parse")
    assert "notes" not in cut and "audio" not in cut


@pytest.mark.parametrize(("request_body", "message"), [
    ({"style": "nosuch"}, "unknown style 'nosuch' (available: bach, base, hershey, irish)"),
    ([1, 2], "must be a JSON object"),
    ({"style": "bach", "length": 1e12}, "length must be between 0 and 1,000,000"),
    ({"style": "bach", "length": 500}, "this page makes at most 20,000"),
    ({"style": "bach", "n": 1000}, "number of pieces must be between 1 and 16"),
    ({"style": "bach", "n": 1.5}, "must be a whole number"),
    ({"style": "bach", "temperature": 1e6}, "temperature must be between 0 and 10"),
    ({"style": "bach", "temperature": "hot"}, "temperature must be a number"),
    ({"style": "bach", "sampler": "nosuch"}, "unknown sampler 'nosuch'"),
    ({"style": "bach", "requests": {"melody": "67 zz"}}, "cannot read 'zz' in the melody"),
    ({"style": "bach", "label": "a"}, "bach takes no label"),
    ({"style": "bach", "primer": {"name": "notes.txt", "data": "aGVsbG8="}}, "'notes.txt' holds text files"),
    ({"style": "bach", "primer": {"name": "fake.mid", "data": "aGVsbG8="}}, "cannot read primer fake.mid: not a"),
    ({"style": "bach", "primer": {"name": "x.mid", "data": "%%%"}}, "did not arrive as base64"),
    ({"style": "bach", "colour": "red"}, "unknown field 'colour'"),
])
def test_bad_requests_are_refused_in_one_line_before_they_queue(queue, request_body, message):
    with pytest.raises(ComposerError) as caught:
        queue.submit(request_body)
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert "/tmp" not in str(caught.value)  # an upload is named as the user named it, not by where it was saved
    assert not queue.jobs and not list(queue.root.iterdir())


def test_jobs_wait_in_line_and_run_one_at_a_time_in_order(queue, held):
    first, second, third = (queue.submit({"style": "bach", "length": 1, "seed": s}) for s in (1, 2, 3))
    deadline = time.time() + 30
    while first.state != "running":
        assert time.time() < deadline
        time.sleep(0.01)
    assert [queue.status(j)["ahead"] for j in (first, second, third)] == [0, 1, 2]
    assert [j.state for j in (second, third)] == ["queued", "queued"]
    held.set()
    results = [wait(queue, j) for j in (first, second, third)]
    assert [r["state"] for r in results] == ["done"] * 3
    assert first.finished <= second.started and second.finished <= third.started


def test_the_waiting_line_is_capped(queue, held, monkeypatch):
    monkeypatch.setattr(jobs, "MAX_WAITING", 2)
    for seed in range(3):  # one running (held), two waiting
        queue.submit({"style": "bach", "length": 1, "seed": seed})
        time.sleep(0.05)
    with pytest.raises(ComposerError, match="2 jobs are waiting already"):
        queue.submit({"style": "bach", "length": 1})


def test_a_job_that_fails_says_why_in_one_line_and_the_next_one_runs(queue, monkeypatch):
    def broken(self, *args, **kwargs):
        raise RuntimeError("the model fell over\nsecond line")

    with monkeypatch.context() as patch:
        patch.setattr(Session, "generate", broken)
        failed = wait(queue, queue.submit({"style": "bach", "length": 1}))
    assert failed["state"] == "failed" and failed["error"] == "unexpected RuntimeError: the model fell over"
    assert wait(queue, queue.submit({"style": "bach", "length": 1}))["state"] == "done"


def test_old_jobs_are_forgotten_and_their_files_deleted(queue, monkeypatch):
    monkeypatch.setattr(jobs, "KEEP_JOBS", 2)
    made = [queue.submit({"style": "bach", "length": 1, "seed": s}) for s in range(3)]
    for job in made:
        wait(queue, job)
    time.sleep(0.1)  # the worker forgets after it finishes a job
    with pytest.raises(jobs.NoSuchJob, match="keeps the last 2"):
        queue.get(made[0].id)
    assert not made[0].folder.exists() and made[2].folder.exists()
    assert queue.get(made[2].id) is made[2]


def test_closing_deletes_every_file():
    queue = jobs.JobQueue(device="cpu")
    wait(queue, queue.submit({"style": "bach", "length": 1}))
    queue.close()
    assert not queue.root.exists()


def test_styles_and_samplers_as_the_page_lists_them(isolated):
    (isolated / "styles").mkdir()
    shutil.copy(composer.load("bach").path, isolated / "styles" / "mine.safetensors")  # as finetune installs one
    plugins.reset()
    styles = {s["name"]: s for s in jobs.style_list(get_registry())}
    assert styles["mine"]["source"] == "user" and styles["mine"]["encoder"] == "polyphony"
    assert styles["bach"]["source"] == "built-in"
    assert styles["bach"]["requests"] == ["melody", "tempo", "program", "programs", "cadence", "voicing"]
    assert styles["bach"]["length_unit"] == "bars"
    assert styles["irish"]["requests"] == ["prime"] and styles["bach"]["description"]
    assert len(styles["hershey"]["labels"]) > 50 and styles["hershey"]["modality"] == "strokes"
    samplers = {s["name"]: s for s in jobs.sampler_list(get_registry())}
    assert samplers["top-p"]["options"] == {"temperature": 1.0, "top_p": 0.9} and samplers["greedy"]["options"] == {}
