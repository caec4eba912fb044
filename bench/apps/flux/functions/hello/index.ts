// GET /hello: no database; the cost of the request path itself.
export default async function handler() {
  return { message: "hello" };
}
