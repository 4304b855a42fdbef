"""The named defects of vanilla gevent-websocket 0.10.1, one sentence each.

Each is the ``defect=`` of a protocol check (tests/matrix/test_protocol.py: the
expected failure on the vanilla build) and what an Autobahn case that is not OK
maps to (tests/harness/conformance.py ``defects()``): one definition for both.
"""

from __future__ import annotations

# What vanilla 0.10.1 does; the xfail reason on that build.
CLOSE_DROPS_CODE = ("WebSocket.close(code, reason) sends no code: the reason's bytes are the "
                    "whole payload, so b'bye' reads as close code 25209")
CLOSE_TOO_LONG = ("WebSocket.close() sends a 200-byte reason whole, without the code: a close "
                  "frame over the 125 bytes a control frame may hold")
ECHO_REPR = ("the echo of a client's close sends repr(bytearray) ('bytearray(b\"...\")') as "
             "its payload: the client's code is lost")
ECHO_EMPTY = "the echo of a client's close without a reason is empty: the client's code is lost"
NODE_INVALID = ("node ws fails the connection on WebSocket.close(1000, u'bye'): 'invalid status "
                "code 25209' (the code is dropped, 'by' is read as the code)")
PYTHON_INVALID = ("websocket-client rejects the close frame of WebSocket.close(1000, u'bye'): "
                  "'Invalid close opcode 25209' (the code is dropped, 'by' is read as the code)")
KEY_500 = ("a malformed Sec-WebSocket-Key raises binascii.Error in the handshake: 500 Internal "
           "Server Error instead of 400")
KEY_ALPHABET = ("a Sec-WebSocket-Key with characters outside the base64 alphabet is accepted "
                "(b64decode drops them): 101 Switching Protocols instead of 400")
STR_BODY = ("the {status} body is str: gevent raises TypeError after the headers and drops the "
            "connection before the Content-Length bytes")
HTTP10 = ("an HTTP/1.0 upgrade is answered '402 Bad Request' (402 is Payment Required), and its "
          "str body drops the connection")
UNMASKED = ("an unmasked client frame is accepted and handed to the application (RFC 6455 5.1: "
            "the server must fail the connection, 1002)")
UTF8_NO_CODE = ("invalid UTF-8 is detected, but close(1007) drops the code: the server sends an "
                "empty close frame")
UTF8_NOT_FAIL_FAST = ("invalid UTF-8 inside a text frame is found only once the whole frame has "
                      "arrived: a client that stops after the invalid octets keeps the connection")
BAD_CLOSE_NO_CODE = ("a malformed client close is detected, but close(1002) drops the code: the "
                     "server sends an empty close frame")

