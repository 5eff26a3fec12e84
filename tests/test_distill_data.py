"""distill/data.py: the bundled speech corpus (splits disjoint in voice and text, every file 16 kHz at its listed
length), user audio joining the train split, and the teacher-video cache on the procedural teacher: shapes, audio
round trip, frames equal to a direct generate call, cache hits, a new seed or config is a new entry, a damaged
entry is made again, and a failed write leaves no entry."""
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

pytest.importorskip("mediapipe", reason="mediapipe is installed by scripts/setup.sh")

import distill.data as data  # noqa: E402
from distill.data import SpeechClip, TeacherClip, speech_corpus, teacher_clips  # noqa: E402
from distill.teachers.procedural import ProceduralTeacher  # noqa: E402
from engine.audio.features import read_audio  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")
ASSETS = Path(__file__).resolve().parent.parent / "assets"
SIDE = 128


@pytest.fixture(scope="module")
def corpus():
    return speech_corpus()


@pytest.fixture(scope="module")
def teacher():
    return ProceduralTeacher(max_side=SIDE)


@pytest.fixture(scope="module")
def short_clips(corpus, tmp_path_factory):
    """Two 1 s clips cut from the corpus (one per split), as 16-bit FLAC files."""
    folder = tmp_path_factory.mktemp("cuts")
    out = []
    for split in ("train", "heldout"):
        c = next(c for c in corpus if c.split == split)
        pcm, rate = sf.read(str(c.path), dtype="int16")
        path = folder / f"{c.id}.flac"
        sf.write(str(path), pcm[int(0.3 * rate): int(1.3 * rate)], rate, subtype="PCM_16")
        out.append(SpeechClip(f"cut-{c.id}", path, split, c.voice, c.text))
    return out


# ------------------------------------------------------------------------------------------------ corpus
def test_corpus_splits_share_no_voice_and_no_text(corpus):
    train = [c for c in corpus if c.split == "train"]
    held = [c for c in corpus if c.split == "heldout"]
    assert len(train) == 60 and len(held) == 8
    assert len({c.text for c in train}) == 10 and len({c.voice for c in train}) == 6
    assert len({c.text for c in held}) == 4 and len({c.voice for c in held}) == 2
    assert not {c.voice for c in train} & {c.voice for c in held}
    assert not {c.voice.split("+")[0] for c in train} & {c.voice.split("+")[0] for c in held}   # base voices too
    assert not {c.text for c in train} & {c.text for c in held}
    assert len({c.id for c in corpus}) == len(corpus)


def test_corpus_files_load_at_16k_with_their_listed_length(corpus):
    listed = {e["id"]: e for e in json.loads((ASSETS / "speech" / "corpus.json").read_text())["clips"]}
    assert set(listed) == {c.id for c in corpus}
    size = 0
    for c in corpus:
        wave, rate = read_audio(c.path)
        assert rate == 16000, c.path
        assert abs(wave.shape[0] / rate - listed[c.id]["seconds"]) <= 0.05, c.path
        assert 2.0 < wave.shape[0] / rate < 5.0, c.path
        assert abs(float(wave.abs().max()) - 10 ** (-1 / 20)) < 0.01, c.path       # peak at -1 dBFS
        size += c.path.stat().st_size
    assert size < 4e6                                                                # kept small: it is committed


def test_extra_user_audio_joins_train(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    t = np.arange(22050) / 22050
    sf.write(str(folder / "b.wav"), 0.3 * np.sin(2 * np.pi * 220 * t), 22050)
    sf.write(str(folder / "a.flac"), 0.3 * np.sin(2 * np.pi * 330 * t[:16000]), 16000)
    (folder / "notes.txt").write_text("not audio")
    single = tmp_path / "b.wav"                                                      # same stem as folder/b.wav
    sf.write(str(single), np.zeros(8000), 16000)
    base = speech_corpus()
    clips = speech_corpus(extra=[folder, str(single)])
    assert clips[:len(base)] == base
    user = clips[len(base):]
    assert [c.path for c in user] == [folder / "a.flac", folder / "b.wav", single]
    assert all(c.split == "train" and c.voice == "user" for c in user)
    assert len({c.id for c in clips}) == len(clips)
    assert user[1].audio().shape[0] == 16000                                         # 22.05 kHz -> 16 kHz
    with pytest.raises(ValueError, match="missing.wav"):
        speech_corpus(extra=[tmp_path / "missing.wav"])
    (tmp_path / "fake.wav").write_text("this is not audio")
    with pytest.raises(ValueError, match="fake.wav"):
        speech_corpus(extra=[tmp_path / "fake.wav"])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="empty"):
        speech_corpus(extra=[empty])


def test_corrupt_corpus_is_named(tmp_path):
    (tmp_path / "corpus.json").write_text("{not json")
    with pytest.raises(ValueError, match="corpus.json is corrupt"):
        speech_corpus(tmp_path)
    (tmp_path / "corpus.json").write_text(json.dumps({"clips": [{"id": "x", "file": "gone.flac", "split": "train",
                                                                 "voice": "en", "text": "hi"}]}))
    with pytest.raises(ValueError, match="gone.flac"):
        speech_corpus(tmp_path)
    with pytest.raises(ValueError, match="not found"):
        speech_corpus(tmp_path / "nowhere")


# ------------------------------------------------------------------------------------------------ teacher videos
def _count_generate(monkeypatch, teacher) -> list:
    calls = []
    real = type(teacher).generate

    def counted(*args, **kwargs):
        calls.append(kwargs.get("seed"))
        return real(teacher, *args, **kwargs)
    monkeypatch.setattr(teacher, "generate", counted)
    return calls


def test_teacher_clips_are_generated_cached_and_regenerated(teacher, photo, short_clips, tmp_path, monkeypatch):
    direct = [teacher.generate(photo, c.audio(), seed=0) for c in short_clips]      # before counting
    calls = _count_generate(monkeypatch, teacher)
    cache = tmp_path / "teacher"
    out = teacher_clips(teacher, photo, short_clips, cache, progress=False)
    assert len(calls) == 2
    for clip, src, want in zip(out, short_clips, direct):
        assert isinstance(clip, TeacherClip) and clip.id == src.id and clip.split == src.split
        frames = clip.frames()
        assert frames.shape == (25, SIDE, SIDE, 3) and frames.dtype == np.uint8
        assert isinstance(frames, np.memmap)
        assert np.array_equal(frames, want)                                          # what generate made, exactly
        audio, heard = clip.audio(), src.audio()
        assert audio.dtype == torch.float32 and audio.shape == heard.shape == (16000,)
        assert float((audio - heard).abs().max()) <= 0.5 / 32768                     # 16-bit FLAC round trip
        assert np.array_equal(clip.reference(), teacher.prepare(photo).image)        # the photo the rig warps
        assert clip.reference().shape == (SIDE, SIDE, 3)
        assert clip.frames_path.parent.name.startswith(src.id + "-")
        assert (clip.frames_path.parent / "preview.mp4").stat().st_size > 1000
        assert clip.meta["frames"] == 25 and clip.meta["seed"] == 0
        assert json.loads((clip.frames_path.parent / "meta.json").read_text())["key"] == clip.meta["key"]
    assert out[0].meta["key"] != out[1].meta["key"]

    # a second call reads the cache: no generate
    again = teacher_clips(teacher, photo, short_clips, cache, progress=False)
    assert len(calls) == 2
    assert [c.frames_path for c in again] == [c.frames_path for c in out]

    # another seed is another entry (and other frames: the seed drives the idle motion)
    seeded = teacher_clips(teacher, photo, short_clips[:1], cache, seed=1, progress=False, preview=False)
    assert calls == [0, 0, 1]
    assert seeded[0].frames_path.parent != out[0].frames_path.parent
    assert not np.array_equal(seeded[0].frames(), direct[0])

    # an entry without meta.json is made again; the intact one is not touched
    (out[0].frames_path.parent / "meta.json").unlink()
    redone = teacher_clips(teacher, photo, short_clips, cache, progress=False, preview=False)
    assert calls == [0, 0, 1, 0]
    assert redone[0].frames_path == out[0].frames_path and (out[0].frames_path.parent / "meta.json").is_file()
    assert np.array_equal(redone[0].frames(), direct[0])
    # so is one that lost its frames (meta.json alone does not make an entry)
    (out[1].frames_path).unlink()
    redone = teacher_clips(teacher, photo, short_clips, cache, progress=False, preview=False)
    assert calls == [0, 0, 1, 0, 0]
    assert np.array_equal(redone[1].frames(), direct[1])
    entries = sorted(p.name for p in cache.iterdir())
    assert len(entries) == 3 and not [n for n in entries if n.startswith(".")]      # no temporary folders left


def test_key_covers_teacher_config_and_photo(teacher, photo, short_clips, tmp_path, monkeypatch):
    clip = short_clips[:1]
    a = teacher_clips(teacher, photo, clip, tmp_path, progress=False, preview=False)[0]
    b = teacher_clips(ProceduralTeacher(max_side=SIDE, jaw_open=0.1), photo, clip, tmp_path, progress=False,
                      preview=False)[0]
    flipped = np.ascontiguousarray(photo[:, ::-1])
    c = teacher_clips(teacher, flipped, clip, tmp_path, progress=False, preview=False)[0]
    assert len({a.meta["key"], b.meta["key"], c.meta["key"]}) == 3
    assert not np.array_equal(a.frames(), c.frames())
    with pytest.raises(ValueError, match="photo"):
        teacher_clips(teacher, photo.astype(np.float32) / 255, clip, tmp_path, progress=False)


def test_failed_write_leaves_no_entry(teacher, photo, short_clips, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("disk full")
    monkeypatch.setattr(data, "_write_preview", broken)                            # fails after frames.npy
    with pytest.raises(RuntimeError, match="disk full"):
        teacher_clips(teacher, photo, short_clips[:1], tmp_path, progress=False)
    assert list(tmp_path.iterdir()) == []                                           # no entry, no temporary
    monkeypatch.undo()
    calls = _count_generate(monkeypatch, teacher)
    clip = teacher_clips(teacher, photo, short_clips[:1], tmp_path, progress=False)[0]
    assert len(calls) == 1 and clip.frames().shape == (25, SIDE, SIDE, 3)
