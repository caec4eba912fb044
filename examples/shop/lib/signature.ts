// Webhook signatures: HMAC-SHA256 over the raw request body, compared in constant time.

const encoder = new TextEncoder();

export async function hmacHex(secret: string, body: Uint8Array<ArrayBuffer>): Promise<string> {
  const key = await crypto.subtle.importKey("raw", encoder.encode(secret), { name: "HMAC", hash: "SHA-256" },
                                            false, ["sign"]);
  const mac = new Uint8Array(await crypto.subtle.sign("HMAC", key, body));
  return Array.from(mac, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Whether `signature` ("sha256=<hex>") is the HMAC of `body` under `secret`. */
export async function validSignature(secret: string, body: Uint8Array<ArrayBuffer>, signature: string | undefined): Promise<boolean> {
  if (!signature?.startsWith("sha256=")) return false;
  const expected = await hmacHex(secret, body);
  const given = signature.slice("sha256=".length).toLowerCase();
  if (given.length !== expected.length) return false;
  let diff = 0;
  for (let i = 0; i < expected.length; i++) diff |= expected.charCodeAt(i) ^ given.charCodeAt(i);
  return diff === 0;
}
