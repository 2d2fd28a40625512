import type { EnvironmentProviders, Provider } from "@angular/core";

/** Zoneless, a new app's default: no provider needed (angular.json's `zone` configuration swaps this file). */
export const changeDetection: (Provider | EnvironmentProviders)[] = [];
