/**
 * What a handlers module needs, and nothing more (`import … from "baton/handlers"`): a
 * worker thread that loads the module then does not load the client and store drivers.
 */
import type { HandlerMap } from "../worker/handlerTypes.js";

export {
  type Handler,
  type HandlerContext,
  type HandlerMap,
  JobStopped,
  NonRetryableError,
  type StopCause,
} from "../worker/handlerTypes.js";

/**
 * Declares handlers, keeping each one's payload and result types for `createClient<typeof
 * handlers>` and `Worker`: `defineHandlers({ sendEmail: async (p: { to: string }, ctx) => … })`.
 */
export function defineHandlers<const H extends HandlerMap>(handlers: H): H {
  return handlers;
}
