// All schema migrations in application order.
import { migrations2020 } from "./2020.js";
import { migrations2021 } from "./2021.js";
import { migrations2022 } from "./2022.js";
import type { Migration } from "./migration.js";

export type { Migration } from "./migration.js";

export const allMigrations: readonly Migration[] = [...migrations2020, ...migrations2021, ...migrations2022];
