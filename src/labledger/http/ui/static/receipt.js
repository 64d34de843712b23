// Checks a labledger receipt with nothing but the ledger's public key, in the browser.
// The same steps as `labledger verify-receipt` (src/labledger/core/receipt.py): the leaf is
// re-derived from the receipt's readable content with the ledger's canonical encoding
// (docs/verification.md), its RFC 9162 inclusion proof is checked against the checkpoint's
// root, and the checkpoint (a C2SP signed note) against the Ed25519 key. No network requests.
"use strict";

const LEAF_VERSION = "labledger-leaf/v1";
const RECEIPT_FORMATS = ["labledger-receipt/v1"];
// What a receipt may hold (core/receipt.py FIELDS, ENTRY_FIELDS): anything else is unsigned.
const FIELDS = ["format", "leaf_index", "tree_size", "entry", "leaf", "leaf_hash", "inclusion_proof", "checkpoint"];
const ENTRY_FIELDS = ["kind", "content"];
const SIGNATURE_PREFIX = "\u2014 ";
const utf8 = new TextEncoder();

class Rejected extends Error {
  constructor(step, message, field) {
    super(message);
    this.step = step;
    this.field = field || null;
  }
}

function b64decode(text, what) {
  if (typeof text !== "string" || !/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4) {
    throw new Rejected("format", `${what} is not base64`);
  }
  const raw = atob(text);
  return Uint8Array.from(raw, (c) => c.charCodeAt(0));
}

function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function equalBytes(a, b) {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

async function sha256(bytes) {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
}

// Python's sort order: by code point, not by UTF-16 unit.
function compareCodePoints(a, b) {
  const x = Array.from(a, (c) => c.codePointAt(0));
  const y = Array.from(b, (c) => c.codePointAt(0));
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    if (x[i] !== y[i]) return x[i] - y[i];
  }
  return x.length - y.length;
}

// json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False): JSON.stringify
// escapes strings the same way; keys are sorted by code point; only safe integers exist.
function canonicalJson(value) {
  if (value === null || typeof value === "boolean" || typeof value === "string") {
    return JSON.stringify(value);
  }
  if (typeof value === "number") {
    if (!Number.isSafeInteger(value)) throw new Rejected("content", `${value} is not an integer a leaf can hold`);
    return String(value);
  }
  if (Array.isArray(value)) return "[" + value.map(canonicalJson).join(",") + "]";
  const keys = Object.keys(value).sort(compareCodePoints);
  return "{" + keys.map((k) => JSON.stringify(k) + ":" + canonicalJson(value[k])).join(",") + "}";
}

function leafOf(kind, content) {
  if (typeof kind !== "string" || !/^[a-z_]+$/.test(kind)) throw new Rejected("content", "entry.kind is missing or not a kind", "kind");
  if (!content || typeof content !== "object" || Array.isArray(content)) throw new Rejected("content", "entry.content is not an object", "content");
  return utf8.encode(`${LEAF_VERSION}\n${kind}\n${canonicalJson(content)}`);
}

function parseLeaf(bytes) {
  const text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  const [version, kind, ...rest] = text.split("\n");
  if (version !== LEAF_VERSION) throw new Rejected("content", `unknown leaf version ${JSON.stringify(version)}`);
  return { kind, content: JSON.parse(rest.join("\n")) };
}

// The first field whose readable value differs from the one the leaf holds.
function differingField(entry, leaf) {
  if (entry.kind !== leaf.kind) return "kind";
  const names = new Set([...Object.keys(entry.content), ...Object.keys(leaf.content)]);
  for (const name of [...names].sort(compareCodePoints)) {
    const a = name in entry.content ? canonicalJson(entry.content[name]) : undefined;
    const b = name in leaf.content ? canonicalJson(leaf.content[name]) : undefined;
    if (a !== b) return name;
  }
  return null;
}

function parseVerifierKey(text) {
  // NAME+KEYID+BASE64, where the base64 part may itself hold "+".
  const parts = /^([^+\s]+)\+([0-9a-f]{8})\+(\S+)$/.exec(String(text).trim());
  if (!parts) throw new Rejected("key", "not a verifier key (NAME+KEYID+BASE64)");
  const material = b64decode(parts[3], "the key");
  if (material.length !== 33 || material[0] !== 1) throw new Rejected("key", "not an Ed25519 verifier key");
  return { name: parts[1], id: parts[2], publicKey: material.slice(1) };
}

async function checkKeyId(key) {
  const digest = await sha256(concat(utf8.encode(key.name + "\n"), Uint8Array.of(1), key.publicKey));
  if (hex(digest.slice(0, 4)) !== key.id) throw new Rejected("key", "the key's id does not match its name and public key");
}

function splitNote(note) {
  if (typeof note !== "string" || /[\u0000-\u0009\u000b-\u001f]/.test(note)) throw new Rejected("signature", "the checkpoint is not a signed note");
  const split = note.lastIndexOf("\n\n");
  if (split < 0 || !note.endsWith("\n")) throw new Rejected("signature", "the checkpoint has no signature block");
  const text = note.slice(0, split + 1);
  const lines = note.slice(split + 2, -1).split("\n");
  const signatures = lines.map((line) => {
    if (!line.startsWith(SIGNATURE_PREFIX)) throw new Rejected("signature", "a signature line is malformed");
    const [name, encoded] = line.slice(SIGNATURE_PREFIX.length).split(" ");
    const blob = b64decode(encoded || "", "a signature");
    if (blob.length < 5) throw new Rejected("signature", "a signature line is malformed");
    return { name, blob };
  });
  return { text, signatures };
}

async function verifySignature(note, key) {
  const { text, signatures } = splitNote(note);
  const mine = signatures.find((s) => s.name === key.name && hex(s.blob.slice(0, 4)) === key.id);
  if (!mine) throw new Rejected("signature", `the checkpoint carries no signature by ${key.name}`);
  const publicKey = await crypto.subtle.importKey("raw", key.publicKey, { name: "Ed25519" }, false, ["verify"]);
  const ok = await crypto.subtle.verify({ name: "Ed25519" }, publicKey, mine.blob.slice(4), utf8.encode(text));
  if (!ok) throw new Rejected("signature", "the checkpoint's signature is not valid for this key");
  return text;
}

function parseCheckpoint(text, key) {
  const lines = text.split("\n");
  if (lines.length < 4 || lines[0] !== key.name) throw new Rejected("checkpoint", `the checkpoint is not of log ${key.name}`);
  if (!/^(0|[1-9][0-9]*)$/.test(lines[1])) throw new Rejected("checkpoint", "the checkpoint's tree size is malformed");
  const root = b64decode(lines[2], "the checkpoint's root");
  if (root.length !== 32) throw new Rejected("checkpoint", "the checkpoint's root is not 32 bytes");
  return { size: Number(lines[1]), root };
}

async function nodeHash(left, right) {
  return sha256(concat(Uint8Array.of(1), left, right));
}

// RFC 9162 section 2.1.3.2, step by step (as core/merkle.py verify_inclusion).
async function verifyInclusion(leafHash, index, size, proof, root) {
  if (!(index >= 0 && index < size)) throw new Rejected("proof", "the leaf index is not inside the tree");
  if (proof.some((p) => p.length !== 32)) throw new Rejected("proof", "a proof hash is not 32 bytes");
  let fn = index, sn = size - 1, r = leafHash;
  for (const p of proof) {
    if (sn === 0) throw new Rejected("proof", "the proof has more hashes than the tree has levels");
    if (fn % 2 === 1 || fn === sn) {
      r = await nodeHash(p, r);
      while (fn % 2 === 0 && fn !== 0) {
        fn = Math.floor(fn / 2);
        sn = Math.floor(sn / 2);
      }
    } else {
      r = await nodeHash(r, p);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  if (sn !== 0) throw new Rejected("proof", "the proof has fewer hashes than the path to the root");
  if (!equalBytes(r, root)) throw new Rejected("proof", "the inclusion proof does not lead to the checkpoint's root");
}

// JSON.parse keeps the last of repeated keys silently; a reader could be shown the other one.
function repeatedKey(text) {
  const stack = [];
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (c === '"') {
      let j = i + 1;
      while (text[j] !== '"') j += text[j] === "\\" ? 2 : 1;
      const top = stack[stack.length - 1];
      let k = j + 1;
      while (/\s/.test(text[k] || "")) k++;
      if (top && text[k] === ":") {
        const key = JSON.parse(text.slice(i, j + 1));
        if (top.has(key)) return key;
        top.add(key);
      }
      i = j + 1;
      continue;
    }
    if (c === "{") stack.push(new Set());
    else if (c === "[") stack.push(null);
    else if (c === "}" || c === "]") stack.pop();
    i++;
  }
  return null;
}

function integer(value, name) {
  if (!Number.isSafeInteger(value) || value < 0) throw new Rejected("format", `${name} is not an integer`, name);
  return value;
}

// Returns {verdict: "valid"|"invalid", steps: [{step, ok, message}], field, entry, treeSize}.
async function verifyReceipt(receiptText, keyText) {
  const steps = [];
  const pass = (step, message) => steps.push({ step, ok: true, message });
  try {
    let receipt;
    try {
      receipt = JSON.parse(receiptText);
    } catch {
      throw new Rejected("format", "the receipt is not JSON");
    }
    if (!receipt || typeof receipt !== "object" || !RECEIPT_FORMATS.includes(receipt.format)) throw new Rejected("format", "not a labledger receipt");
    const repeated = repeatedKey(receiptText);
    if (repeated !== null) throw new Rejected("format", `${repeated} appears twice in the file`, repeated);
    const extra = Object.keys(receipt).find((k) => !FIELDS.includes(k));
    if (extra) throw new Rejected("format", `${extra} is not part of a receipt; nothing signed covers it`, extra);
    const entryExtra = Object.keys(receipt.entry || {}).find((k) => !ENTRY_FIELDS.includes(k));
    if (entryExtra) throw new Rejected("format", `entry.${entryExtra} is not part of a receipt entry`, `entry.${entryExtra}`);
    const index = integer(receipt.leaf_index, "leaf_index");
    const treeSize = integer(receipt.tree_size, "tree_size");
    if (!Array.isArray(receipt.inclusion_proof)) throw new Rejected("format", "inclusion_proof is not a list", "inclusion_proof");
    const proof = receipt.inclusion_proof.map((h) => b64decode(h, "a proof hash"));
    pass("format", "The file is a labledger receipt.");

    const key = parseVerifierKey(keyText);
    await checkKeyId(key);
    pass("key", `The public key is an Ed25519 key named ${key.name}.`);

    const text = await verifySignature(receipt.checkpoint, key);
    const checkpoint = parseCheckpoint(text, key);
    pass("signature", `The checkpoint is signed by ${key.name}: the ledger held ${checkpoint.size} entries.`);
    if (checkpoint.size !== treeSize) throw new Rejected("checkpoint", "the receipt's tree_size is not its checkpoint's", "tree_size");

    const entry = receipt.entry || {};
    const leaf = leafOf(entry.kind, entry.content);
    if (receipt.leaf !== undefined) {
      const stored = b64decode(receipt.leaf, "leaf");
      if (!equalBytes(stored, leaf)) {
        let field = "leaf";
        try {
          field = differingField(entry, parseLeaf(stored)) || "leaf";
        } catch (e) { /* an unreadable leaf is named as such */ }
        throw new Rejected("content", `what the receipt shows differs from its leaf in ${field}`, field);
      }
    }
    const leafHash = await sha256(concat(Uint8Array.of(0), leaf));
    if (receipt.leaf_hash !== undefined && receipt.leaf_hash !== "sha256:" + hex(leafHash)) {
      throw new Rejected("content", "leaf_hash is not the hash of the entry", "leaf_hash");
    }
    pass("content", `The entry shown (${entry.kind} ${entry.content.id}) is exactly the one hashed into the ledger.`);

    await verifyInclusion(leafHash, index, checkpoint.size, proof, checkpoint.root);
    pass("proof", `The entry is leaf ${index} of the signed tree of ${checkpoint.size}.`);
    return { verdict: "valid", steps, field: null, entry, treeSize: checkpoint.size };
  } catch (e) {
    if (!(e instanceof Rejected)) {
      e = new Rejected("format", `the receipt could not be read: ${e.message}`);
    }
    steps.push({ step: e.step, ok: false, message: e.message });
    return { verdict: "invalid", steps, field: e.field, entry: null, treeSize: null };
  }
}

if (typeof window !== "undefined") window.labledgerVerifyReceipt = verifyReceipt;
