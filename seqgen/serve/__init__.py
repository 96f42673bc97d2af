"""``seqgen serve``: an OpenAI-compatible HTTP server over a run or a torch-free bundle.

- ``batcher``: many streams advanced together, one engine call per step (no HTTP here).
- ``requests``: request bodies read and checked into typed values (``ApiError`` otherwise).
- ``app``: the Starlette app (completions, streaming, models, health, compose, playground).
- ``server``: runs the app with uvicorn; SIGTERM lets running streams finish, then exits 0.
- ``page``: the playground page (one HTML file, nothing fetched from elsewhere).
Needs the ``serve`` extra (starlette, uvicorn); this ``__init__`` imports nothing.
"""
