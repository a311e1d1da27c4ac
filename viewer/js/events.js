// @ts-check
// A typed event dispatcher (after Potree's EventDispatcher): listeners by event name, one that
// throws does not keep the others from running.

/**
 * @template {object} Events  event name -> what its listeners receive
 */
export class EventDispatcher {
  /** @type {Map<keyof Events, Set<(event: any) => void>>} */
  #listeners = new Map();
  /** @type {(type: keyof Events, error: unknown) => void} */
  #onListenerError;

  /** @param {(type: keyof Events, error: unknown) => void} [onListenerError]  default: console.error */
  constructor(onListenerError = (_type, error) => console.error(error)) {
    this.#onListenerError = onListenerError;
  }

  /**
   * @template {keyof Events} K
   * @param {K} type
   * @param {(event: Events[K]) => void} listener
   * @returns {() => void} removes the listener
   */
  on(type, listener) {
    let set = this.#listeners.get(type);
    if (!set) this.#listeners.set(type, (set = new Set()));
    set.add(listener);
    return () => set.delete(listener);
  }

  /**
   * @template {keyof Events} K
   * @param {K} type
   * @param {Events[K]} event
   */
  emit(type, event) {
    for (const listener of this.#listeners.get(type) ?? []) {
      try {
        listener(event);
      } catch (error) {
        this.#onListenerError(type, error);
      }
    }
  }
}
