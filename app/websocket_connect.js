#!/usr/bin/env node
// The seed's node client: `node websocket_connect.js [URL] [--timeout SECONDS]`.
// Logs each message the server sends, answers it, and exits when the server
// closes.  Same transcript format and exit status as `python -m app.client`:
// one JSON object per line; 0 only if at least one message was received and
// answered and the server then ended the connection.  Every wait is bounded.
//
// The end follows RFC 6455 7.1.1 as browsers do: after the closing handshake
// the client waits, bounded by --timeout (ws's closeTimeout), for the server to
// close TCP.  `tcp_closed` says who closed it and how long after the handshake.
// ws half-closes (sends FIN) right after its close reply; the full close, and
// so `by: server`, needs the server's FIN.
'use strict';

const WebSocket = require('ws');

const DEFAULT_URL = 'ws://localhost:5000/view';
const DEFAULT_TIMEOUT = 5.0;

function parseArgs(argv) {
  const args = { url: DEFAULT_URL, timeout: DEFAULT_TIMEOUT };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--timeout') {
      args.timeout = Number(argv[++i]);
      if (!(args.timeout > 0)) {
        console.error('error: --timeout needs a positive number of seconds');
        process.exit(2);
      }
    } else {
      args.url = argv[i];
    }
  }
  return args;
}

function log(event, fields) {
  const record = Object.assign({ event }, fields);
  const sorted = {};
  for (const key of Object.keys(record).sort()) sorted[key] = record[key];
  process.stdout.write(JSON.stringify(sorted) + '\n');
}

function main() {
  const { url, timeout } = parseArgs(process.argv.slice(2));
  let answered = 0;
  let closed = false;
  let timer = null;
  let handshakeDone = null; // when our close reply went out (the socket's 'finish')
  let serverEnded = null; // when the server's FIN arrived (the socket's 'end')
  let serverReset = null; // when the server reset the connection (ECONNRESET, no FIN)

  const ws = new WebSocket(url, { handshakeTimeout: timeout * 1000, closeTimeout: timeout * 1000 });
  const now = () => Number(process.hrtime.bigint()) / 1e9;

  ws.on('upgrade', (res) => {
    res.socket.on('finish', () => {
      handshakeDone = now();
      clearTimeout(timer); // the exchange is over: ws's closeTimeout bounds the rest
    });
    res.socket.on('end', () => { serverEnded = now(); });
    // A server that closes with unread data in its buffer sends RST, not FIN: it closed
    // the connection all the same, and no bound was waited out.
    res.socket.on('error', (err) => { if (err.code === 'ECONNRESET') serverReset = now(); });
  });

  function logTcpClosed() {
    const fields = { handshake: handshakeDone !== null, bound: timeout, stray_bytes: 0 };
    if (serverEnded !== null) {
      Object.assign(fields, {
        by: 'server', how: 'fin',
        after_handshake: handshakeDone !== null ? Math.round((serverEnded - handshakeDone) * 1e6) / 1e6 : null,
      });
    } else if (serverReset !== null) {
      Object.assign(fields, {
        by: 'server', how: 'reset',
        after_handshake: handshakeDone !== null ? Math.round((serverReset - handshakeDone) * 1e6) / 1e6 : null,
      });
    } else {
      Object.assign(fields, {
        by: 'client', after_handshake: null,
        error: `the server kept the TCP connection open ${timeout.toFixed(1)} s (bound) after the closing handshake`,
      });
    }
    log('tcp_closed', fields);
  }

  function finish(status) {
    clearTimeout(timer);
    process.exitCode = status;
    ws.terminate();
  }

  function arm() {
    clearTimeout(timer);
    timer = setTimeout(() => {
      log('error', { stage: 'receive', error: `timeout: nothing from the server for ${timeout.toFixed(1)} s` });
      closed = true; // we hang up: the 'close' that terminate() causes is not the server's
      log('tcp_closed', {
        handshake: false, by: 'client', after_handshake: null, bound: timeout, stray_bytes: 0,
        error: 'the client gave up waiting for the server',
      });
      finish(1);
    }, timeout * 1000);
  }

  ws.on('open', () => {
    log('open', { url });
    arm();
  });
  ws.on('message', (data) => {
    const text = data.toString('utf8');
    log('received', { data: text });
    const reply = `Hi from the node client (re: ${text})`;
    ws.send(reply);
    log('sent', { data: reply });
    answered += 1;
    arm();
  });
  ws.on('close', (code, reason) => {
    if (closed) return;
    closed = true;
    // ws reports 1005 when the close frame carried no status code.
    log('closed', { by: 'server', code: code === 1005 ? null : code, reason: reason.toString('utf8'), valid: true });
    logTcpClosed();
    finish(answered ? 0 : 1);
  });
  ws.on('error', (err) => {
    if (closed) return;
    closed = true;
    const stage = ws.readyState === WebSocket.CONNECTING ? 'connect' : 'receive';
    if (stage === 'receive' && answered) {
      log('closed', { by: 'server', code: null, reason: null, valid: false, error: String(err.message) });
      logTcpClosed();
      finish(0);
    } else {
      log('error', { stage, error: String(err.message) });
      finish(1);
    }
  });
}

main();
