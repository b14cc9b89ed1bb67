// What both pages share: building elements from text (never HTML from the server: a class or
// run name is whatever a user named a folder, and `innerHTML` would run the script in
// `<img src=x onerror=...>`), and the token of a server started with --token.
"use strict";

const $ = (id) => document.getElementById(id);

// el("div", {className: "bar"}, "text", child, ...): an element; strings become text nodes.
function el(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  for (const child of children.flat()) {
    if (child != null) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

// The page is opened as http://HOST:PORT/#token=TOKEN (what `cnnlab serve --token` prints): the
// fragment never reaches the server's log. It is kept for this tab and taken out of the address bar.
const token = (() => {
  const found = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (found) {
    sessionStorage.setItem("cnnlab-token", decodeURIComponent(found[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
  return sessionStorage.getItem("cnnlab-token");
})();

// fetch, with the token when there is one; an answer that is not 2xx throws its sentence.
async function api(url, options = {}) {
  const headers = new Headers(options.headers || {});
  if (token) headers.set("Authorization", `Bearer ${token}`);
  const res = await fetch(url, { ...options, headers });
  if (!res.ok) {
    const doc = await res.json().catch(() => ({ error: res.statusText }));
    throw new Error(doc.error || res.statusText);
  }
  return res;
}
