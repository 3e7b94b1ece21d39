/*!
 * xyra.js: a small browser client for Xyra WebSocket routes. No dependencies, ES2017.
 *
 * Serve it with `app.enable_client_js()` (at /xyra.js), then:
 *
 *   <script src="/xyra.js"></script>
 *   <script>
 *     const sock = new XyraSocket("/chat");            // relative URLs: ws(s):// of this page
 *     sock.on("open", (ev) => console.log("connected", ev.reconnected));
 *     sock.on("message", (ev) => console.log(ev.data)); // string, or ArrayBuffer for binary
 *     sock.on("json", (ev) => console.log(ev.data));    // text messages that parse as JSON
 *     sock.on("reconnecting", (ev) => console.log("retry", ev.attempt, "in", ev.delay, "ms"));
 *     sock.on("close", (ev) => console.log(ev.code, ev.reason, ev.willReconnect));
 *     sock.on("giveup", (ev) => console.log("stopped:", ev.cause, ev.code, ev.reason));
 *     sock.send("hello");                               // queued while disconnected
 *     sock.sendJSON({type: "join", room: "lobby"});
 *     sock.close();                                     // closes and stops reconnecting
 *   </script>
 *
 * new XyraSocket(url, options)
 *   url        "ws://host/path", "wss://...", "http(s)://..." or a path ("/chat") on this page's host.
 *   options    minDelay     first reconnection delay in ms (default 500)
 *              maxDelay     largest delay in ms (default 10000)
 *              factor       growth of the delay per failed attempt (default 2)
 *              jitter       0..1, the random share of each delay (default 0.5: a delay d is
 *                           drawn from [d/2, d]) so that clients do not reconnect in lockstep
 *              maxRetries   failed attempts in a row before giving up (default Infinity);
 *                           then the "giveup" event with cause "maxRetries"
 *              shouldReconnect(ev)  called when the connection ends without close(), with
 *                           the "close" event's fields; return false to stop reconnecting
 *                           (the "giveup" event with cause "shouldReconnect"). The default,
 *                           XyraSocket.defaultShouldReconnect, stops on code 1008 (policy
 *                           violation) and 4000-4999 (the application said no, e.g. 4401,
 *                           4403) and retries on anything else (1006, 1001, 1011, ...)
 *              minUptime    ms a connection must stay open before the back-off starts
 *                           again from minDelay (default 5000): a server that accepts and
 *                           then closes at once is retried with growing delays
 *              protocols    subprotocols offered (string or array)
 *              binaryType   "arraybuffer" (default) or "blob"
 *              maxQueue     messages held while disconnected (default 1000); past it the
 *                           oldest is dropped and counted in `dropped`
 *              autoConnect  connect at once (default true); else call `connect()`
 *
 * Reconnection: whenever the connection ends without `close()` having been called (server
 * restart, network loss, refused handshake), the client asks `shouldReconnect`, then waits
 * and tries again; the delay grows from minDelay by `factor` per failed attempt up to
 * maxDelay, with jitter, and goes back to minDelay once a connection stayed open for
 * minUptime ms. Going back online (the window's "online" event) retries at once.
 *
 * A browser never sees the HTTP status of a refused handshake (401, 403, 503, ...): the
 * socket just closes with 1006, as when the server is down, so a refusal is retried with
 * back-off (until maxRetries). A server that wants the client to stop and say why accepts
 * the connection and then closes it with 4000-4999 or 1008 and a reason.
 *
 * The send queue: `send()` while not connected queues the message; on (re)connection the
 * "open" listeners run first, then the queue is flushed in order. What an "open" listener
 * sends goes out before the queued messages, so it can re-authenticate or re-join a room
 * first. A message handed to a connection that then breaks is not re-sent (at most once).
 * After `close()`, `send()` throws until `connect()` is called again.
 *
 * Events (`on(type, fn)` returns a function that removes the listener; `off(type, fn)`;
 * `addEventListener`/`removeEventListener` work too, as do the `onopen`, `onmessage`,
 * `onjson`, `onclose`, `onreconnecting`, `ongiveup`, `onerror` properties). Each listener
 * gets one object with `type` and:
 *   open          attempt (failed attempts before this one), reconnected (bool)
 *   message       data (string or ArrayBuffer/Blob), event (the MessageEvent)
 *   json          data (the parsed value), event; only text messages that parse as JSON,
 *                 and only parsed when a json listener exists
 *   close         code, reason, wasClean, opened (false: the handshake never completed),
 *                 attempt, event (the CloseEvent), willReconnect, delay (ms, when
 *                 willReconnect)
 *   reconnecting  attempt (1, 2, ...), delay (ms before the attempt)
 *   giveup        no more attempts until connect(): cause ("shouldReconnect" or
 *                 "maxRetries"), attempt, and the last close's code, reason, wasClean,
 *                 opened, event
 *   error         error: a listener threw, or the browser reported a socket error
 *
 * Properties: url, readyState (the WebSocket constants; CLOSED while waiting to retry),
 * connected (bool), stopped (bool: no connection and none scheduled, i.e. after close(),
 * after "giveup", or before connect() with autoConnect false), queued (messages waiting),
 * dropped (messages dropped from the queue), attempt (failed attempts since the last
 * connection that lasted minUptime), protocol, bufferedAmount, ws.
 */
(function (root) {
  "use strict";

  const DEFAULTS = {
    minDelay: 500,
    maxDelay: 10000,
    factor: 2,
    jitter: 0.5,
    maxRetries: Infinity,
    shouldReconnect: undefined,   // XyraSocket.defaultShouldReconnect
    minUptime: 5000,
    protocols: undefined,
    binaryType: "arraybuffer",
    maxQueue: 1000,
    autoConnect: true,
  };

  // 1008 (policy violation) and 4000-4999 (application codes such as 4401 "login required")
  // mean the server refused this client: trying again would be refused again.
  function defaultShouldReconnect(ev) {
    return ev.code !== 1008 && !(ev.code >= 4000 && ev.code <= 4999);
  }

  function resolveURL(url) {
    if (/^wss?:\/\//i.test(url)) return url;
    const loc = root.location;
    const base = loc ? loc.href : "http://localhost/";
    const u = new URL(url, base);
    u.protocol = u.protocol === "https:" ? "wss:" : "ws:";
    u.hash = "";
    return u.href;
  }

  class XyraSocket {
    constructor(url, options) {
      this.url = resolveURL(url);
      this.options = Object.assign({}, DEFAULTS, options || {});
      this.ws = null;
      this.attempt = 0;
      this.dropped = 0;
      this._queue = [];
      this._listeners = Object.create(null);
      this._timer = null;         // the next attempt, while waiting to reconnect
      this._uptime = null;        // resets `attempt` once a connection lasted minUptime
      this._closed = false;       // close() was called: no more reconnecting
      this._everOpened = false;
      this._inOpen = false;       // "open" listeners are running: send() goes out directly
      this.onopen = this.onmessage = this.onjson = this.onclose = null;
      this.onreconnecting = this.onerror = this.ongiveup = null;
      this._online = () => {
        if (this._timer !== null && !this._closed) {
          clearTimeout(this._timer);
          this._timer = null;
          this._open();
        }
      };
      if (root.addEventListener) root.addEventListener("online", this._online);
      if (this.options.autoConnect) this._open();
    }

    // -- state ----------------------------------------------------------------------------

    get readyState() {
      return this.ws ? this.ws.readyState : XyraSocket.CLOSED;
    }

    get connected() {
      return !!this.ws && this.ws.readyState === XyraSocket.OPEN;
    }

    /** No connection, and none scheduled: after close(), after "giveup", or before connect(). */
    get stopped() {
      return this._timer === null && this.readyState === XyraSocket.CLOSED;
    }

    get queued() {
      return this._queue.length;
    }

    get protocol() {
      return this.ws ? this.ws.protocol : "";
    }

    get bufferedAmount() {
      return this.ws ? this.ws.bufferedAmount : 0;
    }

    // -- events ---------------------------------------------------------------------------

    on(type, fn) {
      (this._listeners[type] || (this._listeners[type] = [])).push(fn);
      return () => this.off(type, fn);
    }

    off(type, fn) {
      const list = this._listeners[type];
      if (list) {
        const i = list.indexOf(fn);
        if (i >= 0) list.splice(i, 1);
      }
    }

    addEventListener(type, fn) {
      this.on(type, fn);
    }

    removeEventListener(type, fn) {
      this.off(type, fn);
    }

    _has(type) {
      const list = this._listeners[type];
      return (list && list.length > 0) || typeof this["on" + type] === "function";
    }

    _emit(type, detail) {
      const ev = Object.assign({ type: type, target: this }, detail);
      const fns = (this._listeners[type] || []).slice();
      const prop = this["on" + type];
      if (typeof prop === "function") fns.unshift(prop);
      for (const fn of fns) {
        try {
          fn.call(this, ev);
        } catch (error) {
          if (type === "error") {
            setTimeout(() => { throw error; });
          } else {
            this._emit("error", { error: error });
            if (!this._has("error")) setTimeout(() => { throw error; });
          }
        }
      }
    }

    // -- sending --------------------------------------------------------------------------

    /**
     * Send now if connected (returns true), else queue it for the next connection (false).
     * After close() it throws: call connect() first.
     */
    send(data) {
      if (this.connected && (this._inOpen || this._queue.length === 0)) {
        this.ws.send(data);
        return true;
      }
      if (this._closed) throw new Error("XyraSocket: send() after close()");
      this._queue.push(data);
      while (this._queue.length > this.options.maxQueue) {
        this._queue.shift();
        this.dropped += 1;
      }
      return false;
    }

    /** JSON.stringify(value) as a text message; queued like send(). */
    sendJSON(value) {
      return this.send(JSON.stringify(value));
    }

    _flush() {
      while (this._queue.length > 0 && this.connected) {
        this.ws.send(this._queue.shift());
      }
    }

    // -- connecting -----------------------------------------------------------------------

    /**
     * Connect now (after autoConnect: false, close() or "giveup", or to retry at once while
     * waiting). After close() or "giveup" the back-off and maxRetries start afresh.
     */
    connect() {
      if (this.stopped) this.attempt = 0;
      this._closed = false;
      if (root.addEventListener) root.addEventListener("online", this._online);  // idempotent
      if (this._timer !== null) {
        clearTimeout(this._timer);
        this._timer = null;
      }
      if (!this.ws || this.ws.readyState === XyraSocket.CLOSED) this._open();
    }

    /** Close with `code` (default 1000) and stop reconnecting; queued messages are kept. */
    close(code, reason) {
      this._closed = true;
      if (this._timer !== null) {
        clearTimeout(this._timer);
        this._timer = null;
      }
      this._stopUptime();
      if (root.removeEventListener) root.removeEventListener("online", this._online);
      if (this.ws && this.ws.readyState <= XyraSocket.OPEN) {
        this.ws.close(code === undefined ? 1000 : code, reason || "");
      }
    }

    _open() {
      this._timer = null;
      let ws;
      try {
        ws = new WebSocket(this.url, this.options.protocols);
      } catch (error) {  // a malformed URL: retrying would not help
        this._closed = true;
        this._emit("error", { error: error });
        return;
      }
      ws.binaryType = this.options.binaryType;
      this.ws = ws;
      let opened = false;
      ws.onopen = () => {
        if (ws !== this.ws) return;
        opened = true;
        const failed = this.attempt;
        const o = this.options;
        if (!(o.minUptime > 0)) {
          this.attempt = 0;
        } else {
          // Only a connection that stays up resets the back-off: one the server accepts and
          // closes at once (a crash in its open handler) counts as a failed attempt.
          this._stopUptime();
          this._uptime = setTimeout(() => {
            this._uptime = null;
            if (ws === this.ws && ws.readyState === XyraSocket.OPEN) this.attempt = 0;
          }, o.minUptime);
        }
        const reconnected = this._everOpened;
        this._everOpened = true;
        this._inOpen = true;
        try {
          this._emit("open", { attempt: failed, reconnected: reconnected });
        } finally {
          this._inOpen = false;
        }
        this._flush();
      };
      ws.onmessage = (event) => {
        if (ws !== this.ws) return;
        this._emit("message", { data: event.data, event: event });
        if (typeof event.data === "string" && this._has("json")) {
          let value;
          try {
            value = JSON.parse(event.data);
          } catch (error) {
            return;
          }
          this._emit("json", { data: value, event: event });
        }
      };
      ws.onerror = (event) => {
        if (ws !== this.ws) return;
        this._emit("error", { error: event });
      };
      ws.onclose = (event) => {
        if (ws !== this.ws) return;
        this._stopUptime();
        const info = {
          code: event.code,
          reason: event.reason,
          wasClean: event.wasClean,
          opened: opened,
          attempt: this.attempt,
          event: event,
        };
        let cause = null;
        if (!this._closed) {
          if (!this._shouldReconnect(info)) cause = "shouldReconnect";
          else if (!(this.attempt < this.options.maxRetries)) cause = "maxRetries";
        }
        const retry = !this._closed && cause === null;
        const delay = retry ? this._delay() : 0;
        // Scheduled before the listeners run, so that `stopped` is right in them and a
        // listener's close() or connect() cancels it.
        if (retry) this._timer = setTimeout(() => this._open(), delay);
        this._emit("close", Object.assign({ willReconnect: retry, delay: delay }, info));
        if (this._closed || ws !== this.ws) return;  // a listener called close() or connect()
        if (cause !== null) {
          this._emit("giveup", Object.assign({}, info, { cause: cause }));
          return;
        }
        if (this._timer === null) return;
        this.attempt += 1;
        this._emit("reconnecting", { attempt: this.attempt, delay: delay });
      };
    }

    _shouldReconnect(info) {
      const fn = this.options.shouldReconnect || defaultShouldReconnect;
      try {
        return !!fn.call(this, Object.assign({ type: "close", target: this }, info));
      } catch (error) {  // a broken rule must not strand the client: use the default
        this._emit("error", { error: error });
        return defaultShouldReconnect(info);
      }
    }

    _stopUptime() {
      if (this._uptime !== null) {
        clearTimeout(this._uptime);
        this._uptime = null;
      }
    }

    _delay() {
      const o = this.options;
      const base = Math.min(o.maxDelay, o.minDelay * Math.pow(o.factor, this.attempt));
      const jitter = Math.min(1, Math.max(0, o.jitter));
      return Math.round(base * (1 - jitter * Math.random()));
    }
  }

  XyraSocket.CONNECTING = 0;
  XyraSocket.OPEN = 1;
  XyraSocket.CLOSING = 2;
  XyraSocket.CLOSED = 3;
  XyraSocket.defaultShouldReconnect = defaultShouldReconnect;

  root.XyraSocket = XyraSocket;
  if (typeof module === "object" && module && module.exports) module.exports = XyraSocket;
})(typeof self !== "undefined" ? self : this);
