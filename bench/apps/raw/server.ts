// The floor: the benchmark's four endpoints as a plain Deno.serve server with postgres.js.
//   deno run --allow-net=127.0.0.1 --allow-env --allow-read --allow-sys server.ts <port> <dsn>
// Same pool size as the Flux Data Engine (10), same SQL shape, no validation, no tracing.
import postgres from "npm:postgres@3.4.9";

const [port, dsn] = Deno.args;
const sql = postgres(dsn, { max: 10, prepare: true, onnotice: () => {} });

const json = (body: unknown, status = 200) =>
  new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });

Deno.serve({ hostname: "127.0.0.1", port: Number(port), onListen: () => console.log("listening") }, async (req) => {
  const url = new URL(req.url);
  if (url.pathname === "/hello" && req.method === "GET") {
    return json({ message: "hello" });
  }
  if (url.pathname === "/items" && req.method === "POST") {
    const input = await req.json();
    const [row] = await sql`
      INSERT INTO items (name, category, price) VALUES (${input.name}, ${input.category}, ${input.price})
      RETURNING id, name, category, price, created_at`;
    return json(row);
  }
  if (url.pathname === "/items" && req.method === "GET") {
    const category = url.searchParams.get("category") ?? "c0";
    const items = await sql`
      SELECT id, name, category, price, created_at FROM items WHERE category = ${category} LIMIT 20`;
    return json({ items });
  }
  if (url.pathname === "/orders" && req.method === "POST") {
    const input = await req.json();
    const result = await sql.begin(async (tx) => {
      const [item] = await tx`SELECT id, name, price FROM items WHERE id = ${input.item_id}`;
      if (!item) return null;
      item.orders = await tx`
        SELECT id, quantity, created_at FROM orders WHERE item_id = ${input.item_id} ORDER BY id DESC LIMIT 5`;
      const [order] = await tx`
        INSERT INTO orders (item_id, quantity) VALUES (${input.item_id}, ${input.quantity})
        RETURNING id, item_id, quantity, created_at`;
      await tx`INSERT INTO outbox (kind, payload) VALUES ('order_placed', ${tx.json({ order_id: order.id })})`;
      return { item, order };
    });
    return result ? json(result) : json({ error: "not_found" }, 404);
  }
  return json({ error: "not_found" }, 404);
});
