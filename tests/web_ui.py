#!/usr/bin/env python3
"""End-to-end test of the web page of `lumen serve` (assets/web/index.html) in headless Chromium.

    python3 tests/web_ui.py --lumen build/lumen --chromium /usr/bin/chromium [--screenshot OUT.png] [--timeout 180]

Starts `LUMEN --threads 1 serve --host 127.0.0.1 --port 0`, opens the page in Chromium (driven with the
DevTools protocol over --remote-debugging-pipe: commands go to Chromium's fd 3, replies come from its fd 4,
each message JSON ended by a NUL byte), waits for the sampler list, types a prompt, sets seed 7, clicks
Generate and waits for an image in the gallery whose parameters text says "Seed: 7". Then it stops the
server with SIGTERM and checks that it exits (status 0) within 30 s. Exit status 0 on success, 1 on
failure. Standard library only.
"""
import argparse
import base64
import fcntl
import json
import os
import queue
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

PROMPT = "a small red circle at the top on a white background"
SEED = 7
# A job that outlasts many of the page's 300 ms progress polls even on a fast
# idle machine (25 steps at 64x64 took 0.3 s here, and no progress was seen):
# the most steps a request may ask for, at 128x128 (about 6 s here).
STEPS, SIZE = 150, 128


def log(message):
    print(f"web_ui: {message}", flush=True)


class Failure(Exception):
    pass


class Deadline:
    def __init__(self, seconds):
        self.end = time.monotonic() + seconds

    def left(self):
        return self.end - time.monotonic()

    def check(self, what):
        if self.left() <= 0:
            raise Failure(f"timed out {what}")


def reserve_fds_3_and_4():
    """Keeps fds 3 and 4 open here, so that none of subprocess's own pipes lands on them in the child
    (where Chromium's two pipe ends replace them)."""
    while True:
        try:
            os.fstat(3)
            os.fstat(4)
            return
        except OSError:
            os.open(os.devnull, os.O_RDONLY)  # takes the lowest free number


class Chromium:
    """Headless Chromium and one DevTools session on its page, over the pipe transport."""

    def __init__(self, binary, workdir):
        self.next_id = 0
        self.buffer = b""
        self.session = None
        self.exceptions = []  # uncaught exceptions in the page
        self.console = []     # console and log messages, for diagnosis
        self.logfile = os.path.join(workdir, "chromium.log")
        reserve_fds_3_and_4()
        cmd_r, self.cmd_w = os.pipe()
        self.reply_r, reply_w = os.pipe()
        # The child's ends, moved above 9 so that dup2 onto 3 and 4 can't overwrite one with the other.
        child_in = fcntl.fcntl(cmd_r, fcntl.F_DUPFD_CLOEXEC, 10)
        child_out = fcntl.fcntl(reply_w, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(cmd_r)
        os.close(reply_w)

        def child_fds():  # runs in the child between fork and exec
            os.dup2(child_in, 3)
            os.dup2(child_out, 4)

        with open(self.logfile, "wb") as out:
            self.proc = subprocess.Popen(
                # --disable-dev-shm-usage: containers often have a tiny /dev/shm, where Chromium would crash.
                [binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--remote-debugging-pipe",
                 f"--user-data-dir={os.path.join(workdir, 'profile')}", "--window-size=1280,1000",
                 "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--mute-audio",
                 "--hide-scrollbars", "about:blank"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                pass_fds=(3, 4), preexec_fn=child_fds, start_new_session=True)
        os.close(child_in)
        os.close(child_out)

    def log_tail(self, lines=15):
        try:
            with open(self.logfile, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""

    def _read_message(self, end):
        while b"\0" not in self.buffer:
            left = end - time.monotonic()
            if left <= 0:
                raise Failure("Chromium did not answer in time")
            ready, _, _ = select.select([self.reply_r], [], [], left)
            if ready:
                chunk = os.read(self.reply_r, 1 << 20)
                if not chunk:
                    raise Failure(f"Chromium closed its pipe (exit status {self.proc.poll()}); "
                                  f"its log ends:\n{self.log_tail()}")
                self.buffer += chunk
        message, _, self.buffer = self.buffer.partition(b"\0")
        return json.loads(message)

    def _event(self, message):
        method, params = message.get("method"), message.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            text = details.get("exception", {}).get("description") or details.get("text", "")
            self.exceptions.append(f"{text} ({details.get('url', '')}:{details.get('lineNumber', '?')})")
        elif method == "Runtime.consoleAPICalled":
            args = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
            self.console.append(f"console.{params.get('type')}: {args}")
        elif method == "Log.entryAdded":
            entry = params.get("entry", {})
            self.console.append(f"{entry.get('level')}: {entry.get('text')} {entry.get('url', '')}")

    def send(self, method, params=None, page=True, timeout=30):
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if page:
            message["sessionId"] = self.session
        data = json.dumps(message).encode() + b"\0"
        while data:
            data = data[os.write(self.cmd_w, data):]
        end = time.monotonic() + timeout
        while True:
            reply = self._read_message(end)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise Failure(f"{method}: {reply['error'].get('message')}")
                return reply.get("result", {})
            if "method" in reply:
                self._event(reply)

    def attach(self, deadline):
        while True:
            pages = [t for t in self.send("Target.getTargets", page=False)["targetInfos"] if t["type"] == "page"]
            if pages:
                break
            deadline.check("waiting for Chromium's page")
            time.sleep(0.1)
        self.session = self.send("Target.attachToTarget", {"targetId": pages[0]["targetId"], "flatten": True},
                                 page=False)["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable")
        self.send("Emulation.setDeviceMetricsOverride",  # room for the whole form in the screenshot
                  {"width": 1280, "height": 1000, "deviceScaleFactor": 1, "mobile": False})

    def evaluate(self, expression):
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise Failure(f"script failed: {details.get('exception', {}).get('description') or details.get('text')}")
        return result["result"].get("value")

    def close(self):
        if self.proc.poll() is None:
            try:
                self.send("Browser.close", page=False, timeout=5)
            except (Failure, OSError):
                pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        try:  # the browser's helpers (renderer, zygote) are in its process group
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()
        for fd in (self.cmd_w, self.reply_r):
            os.close(fd)


class Server:
    """`lumen serve` on a free port; its standard output is echoed with a prefix."""

    def __init__(self, binary):
        cmd = [binary, "--threads", "1", "serve", "--host", "127.0.0.1", "--port", "0"]
        log("starting " + " ".join(cmd))
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
        self.lines = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            print(f"[lumen] {line}", flush=True)
            self.lines.put(line)
        self.lines.put(None)

    def wait_listening(self, deadline):
        while True:
            try:
                line = self.lines.get(timeout=max(0.05, min(1.0, deadline.left())))
            except queue.Empty:
                deadline.check("waiting for 'lumen serve: listening on ...'")
                continue
            if line is None:
                raise Failure(f"lumen exited (status {self.proc.wait()}) before it printed its listening line")
            match = re.search(r"lumen serve: listening on (http://\S+)", line)
            if match:
                return match.group(1).rstrip("/")

    def stop(self):
        """SIGTERM, then the exit must come within 30 s with status 0."""
        if self.proc.poll() is not None:
            raise Failure(f"lumen had already exited (status {self.proc.returncode}) before SIGTERM")
        self.proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        try:
            status = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise Failure("lumen did not exit within 30 s of SIGTERM (killed)")
        log(f"lumen exited {status} {time.monotonic() - started:.1f} s after SIGTERM")
        if status != 0:
            raise Failure(f"lumen exited with status {status} after SIGTERM, expected 0 (graceful shutdown)")


PAGE_STATE = """(() => {
  if (!document.body) return {href: location.href, ready: 'loading'};
  const text = (sel) => { const e = document.querySelector(sel); return e ? e.textContent.trim() : null; };
  const sampler = document.querySelector('#sampler_name') || document.querySelector('select');
  const img = document.querySelector('#gallery img.result');
  let params = null;
  for (let e = img; e && e.id !== 'gallery'; e = e.parentElement) {
    const p = e.querySelector('.parameters');
    if (p) { params = p.textContent; break; }
  }
  const bar = document.querySelector('#progress');
  let fraction = null;
  if (bar && bar.tagName === 'PROGRESS') fraction = bar.value / (bar.max || 1);
  else if (bar && bar.style.width) fraction = parseFloat(bar.style.width) / 100;
  const step = (document.body.innerText.match(/step\\s+(\\d+)\\s*\\/\\s*(\\d+)/i) || []).slice(1).map(Number);
  const missing = ['#prompt', '#seed', '#generate', '#progress', '#gallery', '#error']
    .filter((s) => !document.querySelector(s));
  return {href: location.href, ready: document.readyState, samplers: sampler ? sampler.options.length : 0, error: text('#error'),
          missing, width: img ? img.naturalWidth : null, params, fraction, step};
})()"""


def run(args, workdir):
    deadline = Deadline(args.timeout)
    log(f"starting {args.chromium}")
    browser = Chromium(args.chromium, workdir)  # before the server: no threads yet when it forks
    server = None
    failure = None
    try:
        server = Server(args.lumen)
        browser.attach(deadline)
        url = server.wait_listening(deadline) + "/"
        log(f"server at {url}; opening it")
        nav = browser.send("Page.navigate", {"url": url})
        if nav.get("errorText"):
            raise Failure(f"navigating to {url}: {nav['errorText']}")

        while True:  # the page loads, then fills its pickers
            try:
                state = browser.evaluate(PAGE_STATE)
            except Failure as e:  # e.g. the context went away as the page replaced about:blank
                state = {"href": str(e), "ready": "loading"}
            if state["href"] != url or state["ready"] != "complete":
                deadline.check(f"loading the page (at: {state['href']})")
                time.sleep(0.1)
                continue
            if state["missing"]:
                raise Failure(f"the page lacks {', '.join(state['missing'])}")
            if state["error"]:
                raise Failure(f"the page shows an error while loading: {state['error']}")
            if state["samplers"] > 1:
                break
            deadline.check("waiting for the sampler list to load")
            time.sleep(0.1)
        log(f"page ready, {state['samplers']} sampler options; generating with seed {SEED}")

        browser.evaluate(f"""(() => {{
          const set = (sel, value) => {{
            const e = document.querySelector(sel);
            e.focus(); e.value = value;
            e.dispatchEvent(new Event('input', {{bubbles: true}}));
            e.dispatchEvent(new Event('change', {{bubbles: true}}));
          }};
          set('#prompt', {json.dumps(PROMPT)});
          set('#seed', '{SEED}');
          set('#steps', '{STEPS}');
          set('#width', '{SIZE}');
          set('#height', '{SIZE}');
          document.querySelector('#generate').click();
        }})()""")

        started, last_print, last_step, progress_seen = time.monotonic(), 0.0, None, False
        while True:
            state = browser.evaluate(PAGE_STATE)
            if state["error"]:
                raise Failure(f"the page shows an error: {state['error']}")
            if (state["step"] and state["step"][0] > 0) or (state["width"] is None and 0 < (state["fraction"] or 0) < 1):
                progress_seen = True
            if state["step"] != last_step and time.monotonic() - last_print > 2:
                log(f"progress: step {' / '.join(map(str, state['step'])) or '-'}, bar {state['fraction']}")
                last_step, last_print = state["step"], time.monotonic()
            if state["width"]:
                if f"Seed: {SEED}" not in (state["params"] or ""):
                    raise Failure(f"the image's parameters text lacks 'Seed: {SEED}': {state['params']!r}")
                break
            deadline.check("waiting for the image in #gallery")
            time.sleep(0.1)
        log(f"image in the gallery after {time.monotonic() - started:.1f} s, {state['width']} px wide; "
            f"parameters: {state['params'].splitlines()[-1] if state['params'] else ''}")
        log("progress bar seen moving" if progress_seen else "progress was not seen (the job may have been too quick)")
        if args.require_progress and not progress_seen:
            raise Failure("no progress seen while generating (--require-progress)")

        if args.screenshot:
            shot = base64.b64decode(browser.send("Page.captureScreenshot", {"format": "png"})["data"])
            with open(args.screenshot, "wb") as f:
                f.write(shot)
            log(f"screenshot: {args.screenshot} ({len(shot)} bytes)")
        if browser.exceptions:
            raise Failure("uncaught exceptions in the page:\n  " + "\n  ".join(browser.exceptions))
    except Failure as e:
        failure = e
        if browser.console:
            log("browser console:\n  " + "\n  ".join(browser.console[-20:]))
    finally:
        browser.close()
        if server is not None and (server.proc.poll() is None or not failure):  # else already reported
            try:
                server.stop()
            except Failure as e:
                failure = Failure(f"{failure}; and {e}") if failure else e
    if failure:
        raise failure


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lumen", required=True, help="the lumen binary")
    parser.add_argument("--chromium", default="/usr/bin/chromium", help="the Chromium binary")
    parser.add_argument("--screenshot", help="write a PNG of the page here at the end")
    parser.add_argument("--timeout", type=float, default=180, help="seconds for the whole test (default 180)")
    parser.add_argument("--require-progress", action="store_true", help="fail when no progress was seen")
    args = parser.parse_args()
    for name in ("lumen", "chromium"):
        path = shutil.which(getattr(args, name))
        if not path:
            print(f"web_ui: FAIL: no executable {getattr(args, name)} (--{name})", file=sys.stderr)
            return 1
        setattr(args, name, path)
    workdir = tempfile.mkdtemp(prefix="lumen-web-ui-")
    try:
        run(args, workdir)
    except Failure as e:
        print(f"web_ui: FAIL: {e}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    log("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
