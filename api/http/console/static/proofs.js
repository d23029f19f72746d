// An event's inclusion proof, checked in the browser with WebCrypto alone (what
// core/proofs does in Python): RFC 9162 leaf and node hashes, the audit path from the leaf to
// the root, the root against the latest signed checkpoint, and, given the log's verifier key,
// the checkpoint's Ed25519 signature (C2SP signed note).

const encoder = new TextEncoder();

function b64(text) {
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}

function hex(bytes) {
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

function same(a, b) {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

async function sha256(...parts) {
  const joined = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) { joined.set(part, at); at += part.length; }
  return new Uint8Array(await crypto.subtle.digest("SHA-256", joined));
}

const leafHash = (entry) => sha256(Uint8Array.of(0), entry);
const nodeHash = (left, right) => sha256(Uint8Array.of(1), left, right);

// RFC 9162 2.1.3.2, as core.proofs.merkle.verify_inclusion: the root the path leads to.
export async function rootFromPath(leaf, index, size, path) {
  if (!(index < size)) return null;
  let [fn, sn, hashed] = [index, size - 1, leaf];
  for (const sibling of path) {
    if (sn === 0) return null;
    if (fn % 2 === 1 || fn === sn) {
      hashed = await nodeHash(sibling, hashed);
      while (fn % 2 === 0 && fn !== 0) { fn = Math.floor(fn / 2); sn = Math.floor(sn / 2); }
    } else {
      hashed = await nodeHash(hashed, sibling);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 ? hashed : null;
}

// A signed note: its text (up to the blank line) and its signature lines.
function splitNote(note) {
  const cut = note.indexOf("\n\n");
  const text = note.slice(0, cut + 1);
  const lines = text.slice(0, -1).split("\n");
  const signatures = note.slice(cut + 2).split("\n").filter(Boolean).map((line) => {
    const [name, sig] = line.replace(/^— /, "").split(" ");
    return { name, raw: b64(sig) };
  });
  return { text, origin: lines[0], size: Number(lines[1]), root: b64(lines[2]), signatures };
}

async function signatureCheck(note, vkey) {
  if (!vkey) return { name: "checkpoint signature (Ed25519)", ok: null, detail: "no verifier key given" };
  const [name, keyHash, ...rest] = vkey.split("+"); // base64 may hold "+" too
  const key = rest.join("+");
  const raw = b64(key);
  const signature = note.signatures.find((s) => s.name === name && hex(s.raw.slice(0, 4)) === keyHash);
  if (!signature || raw[0] !== 1) {
    return { name: "checkpoint signature (Ed25519)", ok: false, detail: `no signature by ${name}+${keyHash}` };
  }
  try {
    const publicKey = await crypto.subtle.importKey("raw", raw.slice(1), { name: "Ed25519" }, false, ["verify"]);
    const ok = await crypto.subtle.verify({ name: "Ed25519" }, publicKey, signature.raw.slice(4), encoder.encode(note.text));
    return { name: "checkpoint signature (Ed25519)", ok, detail: `signed by ${name}` };
  } catch (error) {
    return { name: "checkpoint signature (Ed25519)", ok: null, detail: `this browser cannot check Ed25519: ${error.message}` };
  }
}

// Every check, each {name, ok: true | false | null (not run), detail}; ok overall when none failed
// and the path and root checks ran.
export async function verifyInclusion(proof, latestNote, eventId, vkey) {
  if (!crypto.subtle) throw new Error("WebCrypto needs a secure context: open the console on https or 127.0.0.1");
  const signed = splitNote(proof.checkpoint);
  const latest = splitNote(latestNote);
  const entry = b64(proof.entry);
  const fields = new TextDecoder().decode(entry).split("\n");
  const root = await rootFromPath(await leafHash(entry), proof.index, proof.size, proof.inclusion.map(b64));
  const checks = [
    { name: "entry is the event", ok: fields[0] === eventId, detail: `entry names ${fields[0]} (${fields[1]} v${fields[2]} ${fields[3]})` },
    { name: "proof size is the checkpoint's", ok: proof.size === signed.size, detail: `proof ${proof.size}, checkpoint ${signed.size}` },
    { name: "path leads to the checkpoint root", ok: root !== null && same(root, signed.root), detail: `leaf ${proof.index}, ${proof.inclusion.length} hashes, root ${root ? btoa(String.fromCharCode(...root)) : "none"}` },
    { name: "checkpoint is the latest signed", ok: signed.size === latest.size && same(signed.root, latest.root) && signed.origin === latest.origin, detail: `${latest.origin} size ${latest.size}` },
    await signatureCheck(signed, vkey),
  ];
  return { ok: checks.every((c) => c.ok !== false) && checks[2].ok === true, checks };
}
