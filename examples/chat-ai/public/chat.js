// Sends the conversation to /api/chat and shows the answer as it streams in (server-sent events:
// native models send {"response": ...}, chat-completions models choices[0].delta.content).
const chat = document.getElementById("chat");
const input = document.getElementById("input");
const form = document.getElementById("form");
const statusLine = document.getElementById("status");
const history = [];

function addMessage(role, text) {
  const el = document.createElement("div");
  el.className = `message ${role}`;
  el.textContent = text;
  chat.appendChild(el);
  return el;
}

async function send(text) {
  history.push({ role: "user", content: text });
  addMessage("user", text);
  const out = addMessage("assistant", "");
  statusLine.textContent = "thinking";
  const res = await fetch("/api/chat", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ messages: history, max_tokens: Number(new URLSearchParams(location.search).get("max_tokens")) || 256 }),
  });
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "", answer = "", events = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const line = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      if (!line.startsWith("data: ")) continue;
      const data = line.slice(6);
      if (data === "[DONE]") continue;
      const event = JSON.parse(data);
      const piece = event.response ?? event.choices?.[0]?.delta?.content ?? "";
      if (piece) { answer += piece; events += 1; out.textContent = answer; }
    }
  }
  history.push({ role: "assistant", content: answer });
  out.dataset.events = String(events);
  statusLine.textContent = "done";
}

form.addEventListener("submit", (e) => {
  e.preventDefault();
  const text = input.value.trim();
  if (text) { input.value = ""; send(text); }
});

const ask = new URLSearchParams(location.search).get("ask");
if (ask) send(ask);
