// The chat view, and the two tabs. The session lives in an HttpOnly cookie
// this script cannot read; what it holds is the CSRF token the console
// handed out at login, sent back on every call that changes something.
// Everything a user typed is shown with textContent: never parsed as HTML.
"use strict";

const chat = {
  me: null,
  csrf: null,
  partner: null,
  // The open conversation: id -> message, and the oldest id loaded.
  messages: new Map(),
  oldest: 0,
  events: null,
  receipts: null,
  // Ids the live feed brought, in order (the last 1000): a duplicate here
  // would be a duplicate delivery. The browser test reads it.
  arrivals: [],
};

function $(id) {
  return document.getElementById(id);
}

// --- tabs ------------------------------------------------------------------

function showTab() {
  const cluster = location.hash === "#cluster";
  $("cluster-view").hidden = !cluster;
  $("chat-view").hidden = cluster;
  $("tab-cluster").classList.toggle("active", cluster);
  $("tab-chat").classList.toggle("active", !cluster);
}
window.addEventListener("hashchange", showTab);
showTab();

// --- calls -----------------------------------------------------------------

async function api(method, path, body) {
  const headers = { "Content-Type": "application/json" };
  if (chat.csrf) headers["X-CSRF-Token"] = chat.csrf;
  const response = await fetch(path, {
    method,
    headers,
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let value = null;
  try {
    value = text ? JSON.parse(text) : null;
  } catch {
    value = { error: text };
  }
  if (!response.ok) {
    if (response.status === 401 && chat.me) loggedOut("session ended; log in again");
    throw new Error((value && value.error) || response.statusText);
  }
  return value;
}

function status(id, text, failed) {
  $(id).textContent = text;
  $(id).classList.toggle("error", !!failed);
}

// --- login -----------------------------------------------------------------

function credentials() {
  return { username: $("username").value, password: $("password").value };
}

$("auth").addEventListener("submit", async (e) => {
  e.preventDefault();
  try {
    loggedIn(await api("POST", "/api/login", credentials()));
  } catch (err) {
    status("auth-status", err.message, true);
  }
});

$("register").addEventListener("click", async () => {
  try {
    await api("POST", "/api/register", credentials());
    loggedIn(await api("POST", "/api/login", credentials()));
  } catch (err) {
    status("auth-status", err.message, true);
  }
});

$("logout").addEventListener("click", async () => {
  try {
    await api("POST", "/api/logout", {});
  } catch {
    // Already ended: logged out either way.
  }
  loggedOut("logged out");
});

async function loggedIn(session) {
  chat.me = session.username;
  chat.csrf = session.csrf;
  $("password").value = "";
  $("auth").hidden = true;
  $("chat").hidden = false;
  $("logout").hidden = false;
  $("whoami").textContent = session.username;
  const inbox = await api("GET", "/api/conversations");
  renderInbox(inbox);
  // Live from here: everything newer than what the list already shows.
  const after = Math.max(0, ...inbox.map((c) => c.last_message_id));
  chat.events = new EventSource(`/api/events?after=${after}`);
  chat.events.addEventListener("message", (e) => arrived(JSON.parse(e.data)));
  chat.events.addEventListener("inbox", (e) => inboxChanged(JSON.parse(e.data)));
  chat.events.addEventListener("ended", () => loggedOut("session ended; log in again"));
  chat.receipts = setInterval(refreshOpen, 1000);
}

function loggedOut(text) {
  if (chat.events) chat.events.close();
  clearInterval(chat.receipts);
  Object.assign(chat, { me: null, csrf: null, partner: null, events: null, receipts: null, oldest: 0 });
  chat.messages.clear();
  $("auth").hidden = false;
  $("chat").hidden = true;
  $("logout").hidden = true;
  $("whoami").textContent = "";
  $("conversations").replaceChildren();
  $("messages").replaceChildren();
  $("partner").textContent = "Pick a conversation";
  $("compose").hidden = true;
  status("auth-status", text);
}

// --- conversations ---------------------------------------------------------

function renderInbox(list) {
  const items = list.map((c) => {
    const item = document.createElement("li");
    item.dataset.partner = c.partner;
    if (c.partner === chat.partner) item.className = "open";
    const name = document.createElement("button");
    name.type = "button";
    name.textContent = c.partner;
    name.addEventListener("click", () => open(c.partner));
    item.appendChild(name);
    if (c.unread > 0) {
      const badge = document.createElement("span");
      badge.className = "unread";
      badge.textContent = String(c.unread);
      item.appendChild(badge);
    }
    return item;
  });
  $("conversations").replaceChildren(...items);
}

function inboxChanged(list) {
  renderInbox(list);
  const open = list.find((c) => c.partner === chat.partner);
  if (open && !chat.messages.has(open.last_message_id)) refreshOpen();
}

$("search").addEventListener("submit", async (e) => {
  e.preventDefault();
  try {
    const found = await api("GET", `/api/users?q=${encodeURIComponent($("search-q").value)}`);
    const items = found.users.filter((u) => u !== chat.me).map((u) => {
      const item = document.createElement("li");
      const name = document.createElement("button");
      name.type = "button";
      name.textContent = u;
      name.addEventListener("click", () => open(u));
      item.appendChild(name);
      return item;
    });
    $("search-results").replaceChildren(...items);
  } catch (err) {
    status("chat-status", err.message, true);
  }
});

// --- one conversation ------------------------------------------------------

async function open(partner) {
  chat.partner = partner;
  chat.messages.clear();
  chat.oldest = 0;
  $("partner").textContent = partner;
  $("messages").replaceChildren();
  $("compose").hidden = false;
  $("search-results").replaceChildren();
  for (const item of $("conversations").children) item.classList.toggle("open", item.dataset.partner === partner);
  await loadPage(0);
  markRead();
}

async function loadPage(before) {
  const partner = chat.partner;
  const page = await api("GET", `/api/conversations/${encodeURIComponent(partner)}?before=${before}&limit=50`);
  if (partner !== chat.partner) return;
  for (const m of page) chat.messages.set(m.id, m);
  if (page.length) chat.oldest = Math.min(chat.oldest || Infinity, page[0].id);
  $("older").hidden = page.length < 50;
  renderMessages();
}

$("older").addEventListener("click", () => loadPage(chat.oldest).catch((err) => status("chat-status", err.message, true)));

// The newest page again: new messages (also ones sent from another tab),
// receipts that changed, messages deleted.
async function refreshOpen() {
  if (!chat.partner) return;
  const partner = chat.partner;
  let page;
  try {
    page = await api("GET", `/api/conversations/${encodeURIComponent(partner)}?limit=50`);
  } catch {
    return;
  }
  if (partner !== chat.partner) return;
  const from = page.length ? page[0].id : Infinity;
  const present = new Set(page.map((m) => m.id));
  for (const id of chat.messages.keys()) if (id >= from && !present.has(id)) chat.messages.delete(id);
  for (const m of page) chat.messages.set(m.id, m);
  renderMessages();
}

function receipt(m) {
  if (m.read) return ["read", "✓✓ read"];
  if (m.delivered) return ["delivered", "✓ delivered"];
  return ["sent", "sent"];
}

function renderMessages() {
  const list = [...chat.messages.values()].sort((a, b) => a.id - b.id);
  const items = list.map((m) => {
    const item = document.createElement("li");
    item.dataset.id = String(m.id);
    const mine = m.from === chat.me;
    item.className = mine ? "mine" : "theirs";
    const body = document.createElement("span");
    body.className = "body";
    body.textContent = m.body;
    const meta = document.createElement("span");
    meta.className = "meta";
    meta.textContent = new Date(m.sent_at).toLocaleTimeString();
    item.append(body, meta);
    if (mine) {
      const [state, text] = receipt(m);
      const mark = document.createElement("span");
      mark.className = "receipt";
      mark.dataset.receipt = state;
      mark.textContent = text;
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "delete";
      remove.textContent = "delete";
      remove.addEventListener("click", () => removeMessage(m.id));
      item.append(mark, remove);
    }
    return item;
  });
  const pane = $("messages");
  const atBottom = pane.scrollHeight - pane.scrollTop - pane.clientHeight < 40;
  pane.replaceChildren(...items);
  if (atBottom) pane.scrollTop = pane.scrollHeight;
}

function arrived(m) {
  chat.arrivals.push(m.id);
  if (chat.arrivals.length > 1000) chat.arrivals.shift();
  if (m.from === chat.partner) {
    chat.messages.set(m.id, m);
    renderMessages();
    markRead();
  }
}

async function markRead() {
  if (!chat.partner || document.hidden) return;
  try {
    await api("POST", `/api/conversations/${encodeURIComponent(chat.partner)}/read`, { up_to: 0 });
  } catch (err) {
    status("chat-status", err.message, true);
  }
}
document.addEventListener("visibilitychange", markRead);

async function removeMessage(id) {
  try {
    await api("DELETE", `/api/messages/${id}`, {});
    chat.messages.delete(id);
    renderMessages();
  } catch (err) {
    status("chat-status", err.message, true);
  }
}

$("compose").addEventListener("submit", async (e) => {
  e.preventDefault();
  const body = $("body").value;
  if (!body.trim() || !chat.partner) return;
  try {
    const sent = await api("POST", `/api/conversations/${encodeURIComponent(chat.partner)}/messages`, { body });
    $("body").value = "";
    chat.messages.set(sent.id, sent);
    renderMessages();
    status("chat-status", "");
  } catch (err) {
    status("chat-status", err.message, true);
  }
});

$("body").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey) {
    e.preventDefault();
    $("compose").requestSubmit();
  }
});

// --- start -----------------------------------------------------------------

api("GET", "/api/session").then(loggedIn, () => loggedOut(""));
