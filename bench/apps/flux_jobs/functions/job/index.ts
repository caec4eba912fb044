// An async function that does no work: jobs/s measures the queue and the worker round trip.
export default async function handler(input: { i?: number }) {
  return { i: input?.i ?? null };
}
