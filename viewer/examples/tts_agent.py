"""A conversational agent's side of a live avatar: speak sentences through a TTS command, sentence by sentence,
streaming the TTS audio to `audioavatar serve` as it is produced, and optionally barge in.

    audioavatar serve out/demo/avatar --port 0     # prints: serving http://127.0.0.1:PORT/ (open it to watch)
    python viewer/examples/tts_agent.py --url http://127.0.0.1:PORT/ "Hello there." "I am streaming as I speak." \
        [--interrupt-after 1.0]

--url takes the URL exactly as `serve` prints it (or the websocket's, ws://HOST:PORT/ws).

The TTS command gets the sentence appended and must write a 16-bit PCM WAV to stdout (default: espeak-ng).
Prints one JSON line per sentence: samples sent, frames received, the server's latency p50/p95.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from viewer.client import AvatarClient, wav_chunks  # noqa: E402


async def tts_stream(command: list[str], sentence: str):
    """(sample_rate, async iterator of int16 chunks) for one sentence, read from the TTS process as it runs."""
    proc = await asyncio.create_subprocess_exec(*command, sentence, stdout=asyncio.subprocess.PIPE)
    chunks = wav_chunks(proc.stdout)
    first = await anext(chunks)

    async def all_chunks():
        yield first
        async for chunk in chunks:
            yield chunk
        await proc.wait()
    return wav_chunks.sample_rate, all_chunks()


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sentences", nargs="+")
    ap.add_argument("--url", required=True, help="the server, as `audioavatar serve` prints it: http://HOST:PORT/")
    ap.add_argument("--token")
    ap.add_argument("--tts", default="espeak-ng --stdout", help="TTS command; the sentence is appended")
    ap.add_argument("--interrupt-after", type=float, help="barge in this many seconds into the last sentence")
    args = ap.parse_args()
    async with AvatarClient(args.url, args.token) as avatar:
        for i, sentence in enumerate(args.sentences):
            before = avatar.frames_received
            rate, chunks = await tts_stream(shlex.split(args.tts), sentence)
            speaking = asyncio.create_task(avatar.speak(chunks, rate))
            last = i == len(args.sentences) - 1
            if last and args.interrupt_after is not None:
                await asyncio.sleep(args.interrupt_after)
                print(json.dumps({"interrupted_at_frame": await avatar.interrupt()}))
            sent = await speaking
            await asyncio.sleep(sent / rate + 0.3)            # let the avatar finish saying it
            stats = await avatar.stats()
            print(json.dumps({"sentence": sentence, "samples": sent, "rate": rate,
                              "frames": avatar.frames_received - before, "latency_ms_p50": stats["latency_ms_p50"],
                              "latency_ms_p95": stats["latency_ms_p95"], "errors": avatar.errors}))


if __name__ == "__main__":
    asyncio.run(main())
