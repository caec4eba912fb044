// The deployed tier's response-mapping route: a Web Response with a status, two cookies and a binary body.
export default async function handler(input: { kind: string }, _ctx: any) {
  if (input.kind === "binary") {
    const headers = new Headers({ "content-type": "application/octet-stream", "x-kind": "binary" });
    headers.append("set-cookie", "a=1; Path=/");
    headers.append("set-cookie", "b=2; Path=/; HttpOnly");
    return new Response(new Uint8Array([0, 1, 2, 253, 254, 255]), { status: 201, headers });
  }
  if (input.kind === "empty") {
    return new Response(null, { status: 204 });
  }
  return { kind: input.kind };
}
