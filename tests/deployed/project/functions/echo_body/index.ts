// The deployed tier's raw-body route: answers with exactly the bytes it was sent, and their content type.
export default async function handler(_input: unknown, ctx: any) {
  const bytes: Uint8Array = await ctx.request.body.bytes();
  return new Response(bytes, {
    status: 200,
    headers: { "content-type": "application/octet-stream", "x-sent-type": ctx.request.headers["content-type"] ?? "" },
  });
}
