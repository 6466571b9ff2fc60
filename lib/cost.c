/* cost.c — placeholder, to be written. */
typedef int lr__placeholder_cost;
