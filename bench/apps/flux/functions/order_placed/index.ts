// The job place_order pushes: nothing to do but run (the queue's own cost is what is measured).
export default async function handler(input: { order_id: number }) {
  return { order_id: input.order_id };
}
