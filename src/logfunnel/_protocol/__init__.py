"""The protocol: frames, lines, records, exceptions and the handshake, as bytes and plain data.

No sockets here: bytes in, values out (see DESIGN.md, "Shape").
"""
