// A GWS notification listener built on the official CometD JavaScript client, run under Node.
//
// Usage: node gws_listener.mjs --base http://127.0.0.1:PORT --user agent2 --password agent2pw
//                              --transport websocket|long-polling [--auth basic|cookie]
//                              [--channel /v2/me/calls --channel /v2/me/devices]
//                              [--session-cookie VALUE] [--protocol SUBPROTOCOL] [--log-level warn|info|debug]
//
// It behaves like an agent desktop: it authenticates either with HTTP Basic on every request
// ("basic", what .NET and script clients do) or with only the JSESSIONID cookie obtained from a
// REST call ("cookie", what a browser does after login). Only the requested transport is
// registered, so a server that cannot speak it fails the handshake instead of silently falling
// back to the other one.
//
// stdout carries one JSON object per line, for the test to read:
//   {"event":"ready","transport":..,"clientId":..}       handshake and every subscription succeeded
//   {"event":"message","channel":..,"data":..}           a message on a subscribed channel
//   {"event":"handshake-failed","reply":..}              first failed handshake (then it exits 2)
//   {"event":"subscribe-failed","reply":..}              a failed subscription (then it exits 3)
//   {"event":"meta-failure","channel":..,"reply":..}     any other failed /meta reply (informational)
//   {"event":"login-failed","status":..}                 "cookie" mode: the REST login gave no session (exit 4)
//   {"event":"disconnected","successful":..}             after stdin closed or SIGTERM (then it exits 0)
//
// --session-cookie skips the REST login and presents the given JSESSIONID (e.g. a forged one);
// --protocol makes the websocket offer that subprotocol, as CometD's `protocol` setting does.

import { parseArgs } from "node:util";
import { adapt } from "cometd-nodejs-client";
import { CometD } from "cometd";

const { values: args } = parseArgs({
    options: {
        base: { type: "string" },
        user: { type: "string" },
        password: { type: "string" },
        transport: { type: "string", default: "websocket" },
        auth: { type: "string", default: "basic" },
        channel: { type: "string", multiple: true, default: ["/v2/me/calls", "/v2/me/devices"] },
        "session-cookie": { type: "string" },
        protocol: { type: "string" },
        "log-level": { type: "string", default: "warn" },
    },
});

const TRANSPORTS = ["websocket", "long-polling"];
if (!args.base || !args.user || args.password === undefined || !TRANSPORTS.includes(args.transport)
    || !["basic", "cookie"].includes(args.auth)) {
    process.stderr.write("usage: gws_listener.mjs --base URL --user U --password P "
        + "--transport websocket|long-polling [--auth basic|cookie] [--channel C ...]\n");
    process.exit(64);
}

function emit(record) {
    process.stdout.write(JSON.stringify(record) + "\n");
}

function basicHeader(user, password) {
    return "Basic " + Buffer.from(`${user}:${password}`, "utf8").toString("base64");
}

// "cookie" mode: log in over REST like a browser does, keep only the session cookie.
async function sessionCookie(base, authorization) {
    const response = await fetch(`${base}/api/v2/me`, { headers: { Authorization: authorization } });
    const cookies = typeof response.headers.getSetCookie === "function" ? response.headers.getSetCookie() : [];
    const session = cookies.map((c) => c.split(";", 1)[0].trim()).find((c) => c.startsWith("JSESSIONID="));
    return { status: response.status, cookie: session };
}

const authorization = basicHeader(args.user, args.password);
const headers = {};
if (args.auth === "basic") {
    headers.Authorization = authorization;
} else if (args["session-cookie"] !== undefined) {  // a given (e.g. forged or expired) session
    headers.Cookie = `JSESSIONID=${args["session-cookie"]}`;
} else {
    const login = await sessionCookie(args.base, authorization);
    if (!login.cookie) {
        emit({ event: "login-failed", status: login.status });
        process.exit(4);
    }
    headers.Cookie = login.cookie;
}

// Long-polling: cometd-nodejs-client's XMLHttpRequest sends CometD's `requestHeaders` on every
// POST (a "Cookie" header goes to its per-host jar and is sent too). WebSocket: CometD calls
// `new window.WebSocket(url, protocol)` with no way to add headers, so hand the same headers to
// the `ws` constructor, as a browser would attach its cookies to the upgrade request.
adapt({ logLevel: args["log-level"] === "debug" ? "debug" : "info" });
const AdapterWebSocket = global.window.WebSocket;  // the `ws` package's class, installed by adapt()
class AuthenticatedWebSocket extends AdapterWebSocket {
    constructor(url, protocols, options) {
        super(url, protocols, { ...(options || {}), headers: { ...headers } });
    }
}
global.window.WebSocket = AuthenticatedWebSocket;

const cometd = new CometD();
cometd.configure({
    url: `${args.base}/api/v2/notifications`,
    logLevel: args["log-level"],
    requestHeaders: headers,
    protocol: args.protocol || null,  // websocket subprotocol to offer (CometD offers none by default)
});
for (const name of TRANSPORTS) {
    if (name !== args.transport) {
        cometd.unregisterTransport(name);
    }
}
cometd.unregisterTransport("callback-polling");
if (!cometd.getTransportTypes().includes(args.transport)) {
    emit({ event: "transport-missing", transport: args.transport, available: cometd.getTransportTypes() });
    process.exit(5);
}

let closing = false;

function shutdown(code) {
    if (closing) {
        return;
    }
    closing = true;
    const force = setTimeout(() => process.exit(code), 3000);
    force.unref();
    if (cometd.isDisconnected()) {
        emit({ event: "disconnected", successful: false });
        process.exit(code);
    }
    cometd.disconnect((reply) => {
        emit({ event: "disconnected", successful: Boolean(reply && reply.successful) });
        process.exit(code);
    });
}

cometd.addListener("/meta/*", (reply) => {
    if (!reply.successful && reply.channel !== "/meta/handshake" && reply.channel !== "/meta/subscribe") {
        emit({ event: "meta-failure", channel: reply.channel, reply: strip(reply) });
    }
});

// Failure replies built by the client carry the XHR / socket objects; keep what is JSON.
function strip(reply) {
    const { channel, successful, error, advice, clientId, subscription } = reply || {};
    const failure = reply && reply.failure ? {
        httpCode: reply.failure.httpCode,
        reason: reply.failure.reason,
        websocketCode: reply.failure.websocketCode,
    } : undefined;
    return { channel, successful, error, advice, clientId, subscription, failure };
}

function onMessage(message) {
    emit({ event: "message", channel: message.channel, id: message.id, data: message.data });
}

let handshakes = 0;
cometd.handshake((reply) => {
    handshakes += 1;
    if (!reply.successful) {
        emit({ event: "handshake-failed", transport: args.transport, reply: strip(reply) });
        shutdown(2);
        return;
    }
    if (handshakes > 1) {  // a re-handshake keeps the subscriptions (CometD resubscribes them itself)
        emit({ event: "rehandshake", clientId: cometd.getClientId() });
        return;
    }
    let pending = args.channel.length;
    cometd.batch(() => {  // one Bayeux batch with every /meta/subscribe, like agent desktops send
        for (const channel of args.channel) {
            cometd.subscribe(channel, onMessage, (sub) => {
                if (!sub.successful) {
                    emit({ event: "subscribe-failed", reply: strip(sub) });
                    shutdown(3);
                    return;
                }
                pending -= 1;
                if (pending === 0) {
                    emit({ event: "ready", transport: cometd.getTransport().type,
                           clientId: cometd.getClientId(), channels: args.channel });
                }
            });
        }
    });
});

process.on("SIGTERM", () => shutdown(0));
process.on("SIGINT", () => shutdown(0));
process.stdin.on("end", () => shutdown(0));
process.stdin.on("error", () => shutdown(0));
process.stdin.resume();
