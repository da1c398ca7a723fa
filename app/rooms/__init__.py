"""Classroom rooms: the teacher drives one recorded run, every student's screen follows.

model.py (room state as JSON on the bus), codes.py (room codes, nicknames), polls.py
(live questions from the predict engine and the question bank), service.py (state
operations over app.bus), hub.py (this process's sockets and the fan-out), socket.py
(the room websocket), routes.py (pages), limits.py (rate limits), recording.py (the
one recording a room shows). Messages are documented in docs/protocol.md.
"""
