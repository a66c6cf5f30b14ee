"""The `openai` judge against a local OpenAI-compatible server (127.0.0.1 only).

The server answers deterministically by delegating to the offline judge:
extraction requests get the offline events of the caption in the prompt
(rendered as sentences it remembers), relation requests the offline relation
of those events to the premise (caption or event). Its answers come plain,
in code fences, with trailing commas or as Python literals after some prose;
first attempts of some requests get 429/5xx. So the openai judge must give
exactly the offline judge's AutoDQ / TEM -- through prompts, repair, retries,
concurrency and the cache.
"""

import collections
import hashlib
import http.server
import json
import re
import socket
import threading
import time
import urllib.request

import pytest

from facetrack_jax.metrics import judge_offline
from facetrack_jax.metrics import videochatgpt as vcg
from facetrack_jax.metrics.judge import get_judge
from facetrack_jax.metrics.judge_openai import OpenAIJudge, parse_events, parse_relations
from facetrack_jax.metrics.openai_client import (ChatClient, DiskCache, InsecureEndpointError, JudgeError,
                                                  repair_json)
from facetrack_jax.metrics.score import load_captions, main, score_captions
from tests.conftest import SHARED

KEY = "sk-test-123"
VCG_NAMES = {"factual accuracy": "correctness", "detail orientation": "detail",
             "contextual understanding": "context", "temporal accuracy": "temporal"}


def vcg_rule(criterion: str, answer: str, prediction: str) -> int:
  """The fake judge's grade (any deterministic, varied rule will do)."""
  shared = set(answer.lower().split()) & set(prediction.lower().split())
  return (len(shared) + 2 * vcg.CRITERIA.index(criterion)) % 6


def _digest(text: str) -> int:
  return int(hashlib.sha256(text.encode()).hexdigest()[:12], 16)


class FakeLLM:
  """State and answers of the fake chat-completions endpoint."""

  def __init__(self):
    self.lock = threading.Lock()
    self.requests = self.in_flight = self.max_in_flight = 0
    self.attempts = collections.Counter()    # first user message -> requests
    self.injected = collections.Counter()    # "429" / "5xx" -> count
    self.styles = collections.Counter()
    self.auth: set[str] = set()
    self.bodies: list[dict] = []
    self.sentences: dict[str, judge_offline.Event] = {}
    self.fail_first = True         # 429/5xx on the first attempt of about half the prompts
    self.retry_after_on_5xx = False
    self.delay = 0.0
    self.url = ""

  def respond(self, path: str, auth: str | None, body: dict) -> tuple[int, dict, str]:
    with self.lock:
      self.auth.add(auth)
      self.bodies.append(body)
    if path != "/v1/chat/completions":
      return 404, {}, json.dumps({"error": {"message": f"no route {path}"}})
    if auth != f"Bearer {KEY}":
      return 401, {}, json.dumps({"error": {"message": "invalid api key"}})
    prompt = next(m["content"] for m in body["messages"] if m["role"] == "user")
    h = _digest(prompt)
    with self.lock:
      self.attempts[prompt] += 1
      attempt = self.attempts[prompt]
    marker = prompt.lower()
    if attempt == 1 and "rate7" in marker:
      return 429, {"Retry-After": "7"}, "{}"
    if attempt <= 3 and "down3" in marker:
      return 503, {}, "{}"
    if attempt == 1 and "slow" in marker:
      time.sleep(1.0)
    if attempt == 1 and self.fail_first and h % 4 in (0, 1):
      kind = "429" if h % 4 == 0 else "5xx"
      with self.lock:
        self.injected[kind] += 1
      headers = {"Retry-After": "0"} if kind == "429" or self.retry_after_on_5xx else {}
      return (429 if kind == "429" else 500 + h % 4), headers, "{}"
    if "unrepairable" in marker:
      content = "Sorry, I cannot judge that. {events: [oops"
    elif "flaky" in marker and attempt == 1:
      content = "The events are: the man smiles."
    else:
      payload = self.answer(prompt, body["messages"])
      content = self.dress(payload, h)
    return 200, {}, json.dumps({"id": "x", "object": "chat.completion", "model": body["model"],
                                "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]})

  def answer(self, prompt: str, messages: list[dict]) -> object:
    rel = re.search(r"(Video description|Premise event):\n(.*)\n\nEvents \(JSON\):\n(.*?)\n\nAnswer with", prompt, re.S)
    if rel:
      premise = self.sentences[rel.group(2)] if rel.group(1) == "Premise event" else rel.group(2)
      hyps = json.loads(rel.group(3))
      return {"relations": [{"id": x["id"], "reason": "offline rule",
                             "relation": judge_offline.relation(self.sentences[x["event"]], premise)}
                            for x in hyps]}
    ext = re.search(r"Video description:\n(.*)\n\nExtract at most 10 key events", prompt, re.S)
    if ext:
      events = []
      for e in judge_offline.extract_events(ext.group(1)):
        sentence = "the person " + e.key().replace("_", " ")
        with self.lock:
          self.sentences[sentence] = judge_offline.Event(e.part, e.action, e.direction)
        events.append(sentence)
      return {"events": events}
    grade = re.search(r"Correct Answer: (.*)\nPredicted Answer: (.*)\n\nGive your evaluation only as a (.*?) score",
                      prompt, re.S)
    if grade and messages[0]["role"] == "system":
      answer, prediction, name = grade.groups()
      return {"score": 9 if "out_of_range" in prediction.lower() else vcg_rule(VCG_NAMES[name], answer, prediction)}
    return {"ok": True}

  def dress(self, payload: object, h: int) -> str:
    """The payload as JSON, in one of four styles a model might use."""
    style = ("plain", "fenced", "trailing comma", "python after prose")[h // 4 % 4]
    with self.lock:
      self.styles[style] += 1
    text = json.dumps(payload)
    if style == "fenced":
      return f"```json\n{json.dumps(payload, indent=2)}\n```"
    if style == "trailing comma":
      return text[:-1] + ", }"
    if style == "python after prose":
      return f"Sure! Here is the JSON you asked for:\n{payload!r}\nI hope this helps."
    return text


class Handler(http.server.BaseHTTPRequestHandler):
  def do_POST(self):  # noqa: N802
    fake: FakeLLM = self.server.fake
    with fake.lock:
      fake.requests += 1
      fake.in_flight += 1
      fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
    try:
      body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
      status, headers, text = fake.respond(self.path, self.headers.get("Authorization"), body)
      time.sleep(fake.delay)
    finally:
      with fake.lock:  # before the answer leaves, so a client's next request cannot overlap it
        fake.in_flight -= 1
    data = text.encode()
    self.send_response(status)
    for k, v in {"Content-Type": "application/json", "Content-Length": str(len(data)), **headers}.items():
      self.send_header(k, v)
    self.end_headers()
    try:
      self.wfile.write(data)
    except (BrokenPipeError, ConnectionResetError):  # the client timed out ("slow")
      pass

  def log_message(self, *args):
    pass


@pytest.fixture
def fake():
  llm = FakeLLM()
  httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
  httpd.daemon_threads = True
  httpd.fake = llm
  thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
  thread.start()
  llm.url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
  yield llm
  httpd.shutdown()
  httpd.server_close()


def _judge(fake, tmp_path, **kwargs) -> OpenAIJudge:
  settings = dict(model="fake-judge", base_url=fake.url, api_key=KEY, cache_dir=tmp_path / "cache",
                  backoff=0.001, max_wait=0.05, timeout=10, progress=False)
  return OpenAIJudge(**{**settings, **kwargs})


ORDERED = ("The video shows a man with short hair. At the beginning of the video, he raises his eyebrows. As the "
           "video progresses, he turns his head to the left. In the middle of the video, he blinks. Towards the "
           "end of the video, he smiles.")
REFS = {
    "1": ORDERED,
    "2": "The video shows a woman with glasses. At the beginning of the video, she closes her eyes. As the video "
         "progresses, she turns her head to the left.",
    "3": "The video shows a man. In the middle of the video, he blinks and starts speaking. Towards the end of "
         "the video, he stops speaking.",
    "4": "The video shows a girl. At the beginning of the video, she looks down. Towards the end of the video, "
         "she purses her lips.",
    "5": "The video shows an old man. There is no obvious change in his facial expression.",
}
PREDS = {
    "1": ("The video shows a man. At the beginning of the video, he smiles. As the video progresses, he blinks. "
          "In the middle of the video, he turns his head to the right. Towards the end of the video, he raises "
          "his eyebrows."),
    "2": "The video shows a woman. At the beginning of the video, she turns her head to the left. Towards the end "
         "of the video, she closes her eyes.",
    "3": "The video shows a man. At the beginning of the video, he smiles.",
    "4": REFS["4"],
    "5": "The video shows an old man. At the beginning of the video, he nods.",
}


def _corpus():
  preds, refs = dict(PREDS), dict(REFS)
  path = SHARED / "fecbench" / "test_dev_half.json"
  if path.exists():  # a few real references, each scored against the next clip's caption
    real = list(load_captions(path).items())[:5]
    for (i, ref), (_, other) in zip(real, real[1:] + real[:1]):
      refs[f"fec{i}"], preds[f"fec{i}"] = ref, other
  return preds, refs


def test_openai_judge_gives_the_offline_scores_and_caches_everything(fake, tmp_path, monkeypatch):
  preds, refs = _corpus()
  offline = score_captions(preds, refs, "offline", per_clip=True)
  judge = _judge(fake, tmp_path)
  first = score_captions(preds, refs, judge, per_clip=True)
  for name in ("autodq", "tem"):
    assert first[name] == pytest.approx(offline[name], abs=1e-12), name
  assert 0 < first["tem"]["f1"] < first["autodq"]["f1"] < 1
  assert first["judge"] == "openai:fake-judge"
  for i in refs:  # same events, same order, per clip
    for side in ("pred_events", "ref_events"):
      assert [e.split(":")[-1] for e in offline["per_clip"][i][side]] == \
             [s.removeprefix("the person ").replace(" ", "_") for s in first["per_clip"][i][side]]
  # Every repair style and both failure kinds were met, every request carried the key.
  assert set(fake.styles) == {"plain", "fenced", "trailing comma", "python after prose"}
  assert fake.injected["429"] > 0 and fake.injected["5xx"] > 0
  assert fake.auth == {f"Bearer {KEY}"}
  assert judge.client.requests == fake.requests > 0

  # A second run -- a new judge from the registry, configured by the environment -- asks nothing.
  sent = fake.requests
  monkeypatch.setenv("OPENAI_BASE_URL", fake.url)
  monkeypatch.setenv("FACETRACK_JUDGE_MODEL", "fake-judge")
  monkeypatch.setenv("OPENAI_API_KEY", KEY)
  monkeypatch.setenv("FACETRACK_JUDGE_CACHE", str(tmp_path / "cache"))
  again = score_captions(preds, refs, "openai", per_clip=True)
  assert fake.requests == sent
  assert again == first
  # Another model is another judge: its cache entries are its own.
  _judge(fake, tmp_path, model="other-judge").extract_events([ORDERED.lower()])
  assert fake.requests > sent


def test_events_keep_narrative_order_and_premise_kinds(fake, tmp_path):
  judge = _judge(fake, tmp_path)
  caption = ORDERED.lower()
  events, other = judge.extract_events([caption, "at the beginning of the video, he turns his head to the right."])
  assert events == ["the person brows raise", "the person head turn left", "the person eyes blink",
                    "the person mouth smile"]
  assert other == ["the person head turn right"]
  rels = judge.relations([("the person head turn left", caption), ("the person head turn left",
                                                                   "the person head turn right"),
                          ("the person eyes blink", "the person eyes blink")])
  assert rels == ["entailment", "contradiction", "entailment"]
  prompts = [next(m["content"] for m in b["messages"] if m["role"] == "user") for b in fake.bodies]
  assert any(p.startswith("Given a description of a video") and caption in p for p in prompts)
  assert any(p.startswith("Given a premise event") and "Premise event:\nthe person head turn right" in p
             for p in prompts)


def test_concurrency_is_bounded(fake, tmp_path):
  fake.fail_first, fake.delay = False, 0.05
  captions = [f"at the beginning of the video, he smiles and blinks {k} times." for k in range(12)]
  judge = _judge(fake, tmp_path, concurrency=3)
  judge.extract_events(captions)
  assert fake.requests == 12
  assert 2 <= fake.max_in_flight <= 3


def test_retry_after_backoff_timeouts_and_http_errors(fake):
  waits = []
  client = ChatClient(fake.url, "fake-judge", KEY, backoff=0.01, max_wait=30, timeout=0.3, sleep=waits.append)
  ask = lambda text: client.ask([{"role": "user", "content": text}], repair_json, what=f"probe {text}")  # noqa: E731
  assert ask("rate7") == {"ok": True} and waits == [7.0]                # Retry-After honoured
  waits.clear()
  assert ask("down3") == {"ok": True} and len(waits) == 3               # 503 x3, then an answer
  for k, w in enumerate(waits):
    assert 0.5 * 0.01 * 2 ** k <= w <= 0.01 * 2 ** k                      # exponential, jittered
  waits.clear()
  assert ask("slow") == {"ok": True} and len(waits) == 1                # read timeout, then an answer
  assert fake.attempts["rate7"] == 2 and fake.attempts["down3"] == 4 and fake.attempts["slow"] == 2

  sent = fake.requests
  wrong_key = ChatClient(fake.url, "fake-judge", "wrong", key_hint="the key in $MY_KEY", sleep=waits.append)
  with pytest.raises(JudgeError, match=r"probe 401: HTTP 401 .*\$MY_KEY"):
    wrong_key.ask([{"role": "user", "content": "x"}], repair_json, what="probe 401")
  assert fake.requests == sent + 1                                      # no retry on 401
  with pytest.raises(JudgeError, match="HTTP 404"):
    ChatClient(fake.url.removesuffix("/v1"), "m", KEY).ask([{"role": "user", "content": "x"}], repair_json, "p")

  with socket.socket() as s:  # a port nobody listens on
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  waits.clear()
  closed = ChatClient(f"http://127.0.0.1:{port}/v1", "m", max_attempts=3, backoff=0.01, sleep=waits.append)
  with pytest.raises(JudgeError, match=r"probe closed: no usable answer .* after 3 attempts; last error: URLError"):
    closed.ask([{"role": "user", "content": "x"}], repair_json, what="probe closed")
  assert len(waits) == 2


def test_unrepairable_answer_fails_clearly_after_retries(fake, tmp_path):
  fake.fail_first = False
  judge = _judge(fake, tmp_path, max_attempts=3)
  with pytest.raises(JudgeError, match=r"event extraction of caption 'he smiles, unrepairable\.'.*after 3 attempts"
                                       r".*not JSON even after repair"):
    judge.extract_events(["he smiles, unrepairable."])
  assert sum(n for p, n in fake.attempts.items() if "unrepairable" in p) == 3
  # An answer that is no JSON at all is asked again, with the reason.
  assert judge.extract_events(["he blinks, flaky."]) == [["the person eyes blink"]]
  retry = [b for b in fake.bodies if "flaky" in b["messages"][0]["content"]][-1]["messages"]
  assert [m["role"] for m in retry] == ["user", "assistant", "user"]
  assert retry[1]["content"] == "The events are: the man smiles." and "cannot be used" in retry[2]["content"]


def test_videochatgpt_scores_through_the_cli(fake, tmp_path, monkeypatch):
  fake.retry_after_on_5xx = True  # the CLI's judge uses default back-off
  monkeypatch.setenv("MY_JUDGE_KEY", KEY)
  monkeypatch.delenv("OPENAI_API_KEY", raising=False)
  pred, ref = tmp_path / "pred.json", tmp_path / "ref.json"
  pred.write_text(json.dumps([{"id": i, "caption": c} for i, c in PREDS.items()]))
  ref.write_text(json.dumps([{"id": i, "caption": c} for i, c in REFS.items()]))
  argv = ["--pred", str(pred), "--ref", str(ref), "--out", str(tmp_path / "out"), "--judge", "openai",
          "--videochatgpt", "--base-url", fake.url, "--model", "fake-judge", "--api-key-env", "MY_JUDGE_KEY",
          "--cache-dir", str(tmp_path / "cache"), "--concurrency", "2"]
  metrics = main(argv)
  expected = {c: sum(vcg_rule(c, REFS[i], PREDS[i]) for i in REFS) / len(REFS) for c in vcg.CRITERIA}
  assert metrics["videochatgpt"] == pytest.approx(expected)
  assert len(set(expected.values())) > 1
  assert json.loads((tmp_path / "out" / "metrics.json").read_text())["videochatgpt"] == metrics["videochatgpt"]
  first_clip = json.loads((tmp_path / "out" / "per_clip.jsonl").read_text().splitlines()[0])
  assert first_clip["videochatgpt"] == {c: vcg_rule(c, REFS["1"], PREDS["1"]) for c in vcg.CRITERIA}
  assert fake.max_in_flight <= 2 and fake.auth == {f"Bearer {KEY}"}
  sent = fake.requests
  assert main(argv) == metrics and fake.requests == sent                # cached

  with pytest.raises(JudgeError, match=r"VideoChatGPT \w+ score of prediction 'he smiles out_of_range'"
                                       r".*outside 0\.\.5"):
    _judge(fake, tmp_path, max_attempts=2).videochatgpt_scores([("he smiles out_of_range", "he smiles")])
  with pytest.raises(ValueError, match="cannot give VideoChatGPT scores"):
    score_captions(PREDS, REFS, "offline", videochatgpt=True)
  for extra in (["--videochatgpt"], ["--model", "x"]):
    with pytest.raises(SystemExit):
      main(["--pred", str(pred), "--ref", str(ref)] + extra)


def test_repair_and_validation():
  assert repair_json('```json\n{"events": ["a", "b",],}\n```') == {"events": ["a", "b"]}
  assert repair_json("Here you go: {'events': ['the man\\'s eyes close', \"it's fine\"]} -- done") == \
      {"events": ["the man's eyes close", "it's fine"]}
  assert repair_json("{events: [], ok: True, none: None}") == {"events": [], "ok": True, "none": None}
  assert repair_json('[{"id": 1, "relation": "neutral"}] trailing {"x": 1}') == [{"id": 1, "relation": "neutral"}]
  assert repair_json('{"text": "keeps , ] and True: inside",}') == {"text": "keeps , ] and True: inside"}
  for bad in ("no json here", "{'events': [unquoted words]}", '{"events": ["never closed"'):
    with pytest.raises(ValueError):
      repair_json(bad)

  assert parse_events('{"events": [" the man  smiles ", {"event": "the man nods"}, ""]}') == \
      ["the man smiles", "the man nods"]
  assert len(parse_events(json.dumps({"events": [f"e{k}" for k in range(14)]}))) == 10
  with pytest.raises(ValueError, match="not a string"):
    parse_events('{"events": [3]}')
  reordered = '{"relations": [{"id": 2, "relation": "Neutral."}, {"id": 1, "relationship": "entailment"}]}'
  assert parse_relations(reordered, 2) == ["entailment", "neutral"]
  for bad, why in (('{"relations": [{"id": 1, "relation": "entailment"}]}', "1 relations for 2"),
                   ('{"relations": [{"id": 1, "relation": "yes"}, {"id": 2, "relation": "no"}]}', "not one of"),
                   ('{"relations": [{"id": 1, "relation": "neutral"}, {"id": 1, "relation": "neutral"}]}',
                    "repeated")):
    with pytest.raises(ValueError, match=why):
      parse_relations(bad, 2)
  assert vcg.parse_score("{'score': 4}") == 4.0 and vcg.parse_score('```\n{"score": "3.5"}\n```') == 3.5
  with pytest.raises(ValueError, match="outside"):
    vcg.parse_score('{"score": 6}')


def test_disk_cache_survives_a_torn_line(tmp_path, capsys):
  cache = DiskCache(tmp_path / "c" / "judgements.jsonl")
  key = DiskCache.key("m", "v1", "extract", "he smiles")
  assert key != DiskCache.key("m", "v2", "extract", "he smiles")
  cache.put(key, ["the man smiles"], "extract")
  with open(cache.path, "a") as f:
    f.write('{"k": "abc", "v": [1, 2')  # a run killed mid-write
  again = DiskCache(cache.path)
  assert again[key] == ["the man smiles"] and len(again) == 1
  assert "skipped 1 unreadable lines" in capsys.readouterr().err
  assert isinstance(get_judge("openai", base_url="http://127.0.0.1:9/v1", cache_dir=tmp_path), OpenAIJudge)


# ------------------------------------------------------- the key's safety --

def test_a_key_goes_over_plain_http_only_to_loopback_unless_allowed(tmp_path, monkeypatch):
  for url in ("http://judge.example.com/v1", "http://10.0.0.5:8000/v1", "http://127.0.0.1.example.com/v1"):
    with pytest.raises(InsecureEndpointError) as e:
      ChatClient(url, "m", KEY)
    assert repr(url) in str(e.value) and "allow_insecure_http" in str(e.value)
    ChatClient(url, "m", KEY, allow_insecure_http=True)   # told to
    ChatClient(url, "m", None)                            # no key, nothing to leak
  for url in ("https://judge.example.com/v1", "http://127.0.0.1:8000/v1", "http://127.0.0.2/v1",
              "http://localhost:8000/v1", "http://[::1]:8000/v1"):
    ChatClient(url, "m", KEY)
  monkeypatch.setenv("JUDGE_KEY", KEY)
  with pytest.raises(InsecureEndpointError, match=r"the key in \$JUDGE_KEY would travel unencrypted"):
    OpenAIJudge(base_url="http://judge.example.com/v1", api_key_env="JUDGE_KEY", cache_dir=tmp_path)
  captions = tmp_path / "c.json"
  captions.write_text(json.dumps([{"id": "1", "caption": REFS["1"]}]))
  with pytest.raises(InsecureEndpointError):
    main(["--pred", str(captions), "--ref", str(captions), "--judge", "openai", "--base-url",
          "http://judge.example.com/v1", "--api-key-env", "JUDGE_KEY", "--cache-dir", str(tmp_path)])


def _own_address() -> str | None:
  """This machine's non-loopback IPv4 address, if it has one (no packet is sent)."""
  with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
    try:
      s.connect(("10.255.255.255", 1))
      address = s.getsockname()[0]
    except OSError:
      return None
  return None if address.startswith("127.") else address


def test_told_to_the_client_sends_the_key_over_plain_http(tmp_path):
  """A real non-loopback http:// endpoint (this machine's own address)."""
  address = _own_address()
  if address is None:
    pytest.skip("no non-loopback address here")
  if urllib.request.getproxies().get("http"):
    pytest.skip("an http proxy is set: a non-loopback request would go through it")
  httpd = http.server.ThreadingHTTPServer((address, 0), _Recorder)
  httpd.daemon_threads, httpd.seen, httpd.redirects = True, [], {}
  threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
  try:
    url = f"http://{address}:{httpd.server_address[1]}/v1"
    with pytest.raises(InsecureEndpointError, match=re.escape(url)):
      ChatClient(url, "m", KEY)
    client = ChatClient(url, "m", KEY, allow_insecure_http=True, max_attempts=1)
    assert client.ask([{"role": "user", "content": "hi"}], repair_json, what="t") == {"ok": True}
    assert httpd.seen == [("POST", "/v1/chat/completions", f"Bearer {KEY}")]
  finally:
    httpd.shutdown()
    httpd.server_close()


class _Recorder(http.server.BaseHTTPRequestHandler):
  """Records each request's Authorization; ``redirects`` maps a path to the
  URL it is redirected to (302), anything else gets a chat answer."""

  def _handle(self):
    self.server.seen.append((self.command, self.path, self.headers.get("Authorization")))
    if self.headers.get("Content-Length"):
      self.rfile.read(int(self.headers["Content-Length"]))
    target = self.server.redirects.get(self.path)
    if target:
      self.send_response(302)
      self.send_header("Location", target)
      self.send_header("Content-Length", "0")
      self.end_headers()
      return
    data = json.dumps({"choices": [{"message": {"content": '{"ok": true}'}}]}).encode()
    self.send_response(200)
    self.send_header("Content-Type", "application/json")
    self.send_header("Content-Length", str(len(data)))
    self.end_headers()
    self.wfile.write(data)

  do_GET = do_POST = _handle

  def log_message(self, *args):
    pass


@pytest.fixture
def two_servers():
  servers = []
  for _ in range(2):
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    httpd.daemon_threads, httpd.seen, httpd.redirects = True, [], {}
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    servers.append(httpd)
  yield servers
  for httpd in servers:
    httpd.shutdown()
    httpd.server_close()


def test_a_redirect_to_another_host_goes_without_the_key(two_servers):
  """urllib keeps every header on a redirect, to any host: the client drops
  Authorization when the redirect leaves the origin, keeps it when not."""
  a, b = two_servers
  a_port, b_port = a.server_address[1], b.server_address[1]
  try:
    socket.getaddrinfo("localhost", b_port)
  except OSError:
    pytest.skip("'localhost' does not resolve here")
  a.redirects = {"/other/chat/completions": f"http://localhost:{b_port}/answer",
                 "/same/chat/completions": f"http://127.0.0.1:{a_port}/answer"}
  ask = lambda base: ChatClient(f"http://127.0.0.1:{a_port}/{base}", "m", KEY, max_attempts=1).ask(
      [{"role": "user", "content": "hi"}], repair_json, what="redirect test")
  assert ask("other") == {"ok": True}          # the answer came from the other host ...
  assert a.seen == [("POST", "/other/chat/completions", f"Bearer {KEY}")]
  assert b.seen == [("GET", "/answer", None)]   # ... which never saw the key
  a.seen.clear()
  assert ask("same") == {"ok": True}
  assert a.seen == [("POST", "/same/chat/completions", f"Bearer {KEY}"), ("GET", "/answer", f"Bearer {KEY}")]
